//! `serval rollout`: the on-call engineer's tool for moving traffic between
//! versions — aliases, canary shares, promote, rollback, history, a live
//! change feed, and progressive delivery with automatic rollback.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::json;
use serval_client::{ServalClient, proto as pb};

use super::{CliError, json};
use gates::{LiveGates, live_gate_failure};
use pb::update_traffic_request::Change;

mod gates;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Current policy, aliases and live statistics per version: the
    /// fleet's, and each replica's.
    Status(StatusArgs),
    /// Point an alias (e.g. production) at a version, or delete it.
    Alias(AliasArgs),
    /// Send a share of default traffic to a canary version.
    Canary(CanaryArgs),
    /// Make the canary the stable version, at 100 %.
    Promote(ChangeArgs),
    /// Remove the canary (stable unchanged), or roll back to a version.
    Rollback(RollbackArgs),
    /// Remove the traffic policy: default traffic follows the latest version.
    Clear(ChangeArgs),
    /// The audit log; with --at, what served traffic at that time.
    History(HistoryArgs),
    /// Print registry changes as they happen.
    Watch(WatchArgs),
    /// Progressive delivery: raise the canary share step by step, checking
    /// its live statistics across the replicas against gates; roll back on
    /// a failed gate.
    Start(StartArgs),
    /// Score a share of default traffic with a version too, without
    /// answering with it, so that its online quality is known before it
    /// serves; or stop (--off).
    Shadow(ShadowArgs),
}

#[derive(Debug, Args)]
pub struct ShadowArgs {
    #[arg(long)]
    model: String,
    /// The version to score in the shadow.
    #[arg(long, required_unless_present = "off", conflicts_with = "off")]
    version: Option<u32>,
    /// Share of default traffic also scored by it, 0-100.
    #[arg(long, default_value_t = 100.0)]
    percent: f64,
    /// Stop shadowing.
    #[arg(long)]
    off: bool,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    model: String,
    /// Window of the live statistics.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    window: Duration,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AliasArgs {
    #[arg(long)]
    model: String,
    /// Alias name, e.g. production or staging.
    #[arg(long)]
    name: String,
    /// Version to point at.
    #[arg(long, required_unless_present = "delete")]
    version: Option<u32>,
    /// Delete the alias instead.
    #[arg(long, conflicts_with = "version")]
    delete: bool,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CanaryArgs {
    #[arg(long)]
    model: String,
    #[arg(long)]
    version: u32,
    /// Share of default traffic, 0-100.
    #[arg(long)]
    percent: f64,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ChangeArgs {
    #[arg(long)]
    model: String,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[arg(long)]
    model: String,
    /// Make this version stable (no canary) instead of only removing the
    /// canary.
    #[arg(long)]
    to: Option<u32>,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(long)]
    model: String,
    /// A time (RFC 3339, e.g. 2026-11-28T09:30:00Z) or an age (e.g. 15m for
    /// fifteen minutes ago): also say what served traffic then.
    #[arg(long)]
    at: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Replay events after this id first.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[arg(long)]
    model: String,
    /// The canary version to roll out.
    #[arg(long)]
    version: u32,
    /// Canary shares to go through, in percent; reaching 100 promotes.
    #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
    steps: Vec<f64>,
    /// How long each step runs before its gates are checked.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Largest acceptable error rate of the canary (0-1).
    #[arg(long, default_value_t = 0.01)]
    max_error_rate: f64,
    /// Largest acceptable p99 latency of the canary, in ms.
    #[arg(long, default_value_t = 50.0)]
    max_p99_ms: f64,
    /// Canary requests a step needs before its gates can pass.
    #[arg(long, default_value_t = 1)]
    min_requests: u64,
    /// Online quality gate: the canary's online ROC AUC (from reported
    /// outcomes) may fall below the stable version's by at most this much,
    /// e.g. -0.01, once both have --min-outcomes outcomes. Each step waits
    /// for those outcomes (up to --outcome-timeout). Off when not given.
    #[arg(long, allow_hyphen_values = true)]
    min_online_auc_delta: Option<f64>,
    /// Outcomes the canary and the stable version each need before the
    /// online AUC gate is judged.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    min_outcomes: u64,
    /// Longest a step waits for --min-outcomes outcomes; then it fails.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    outcome_timeout: Duration,
    #[arg(long)]
    json: bool,
}

/// What a connection lost during `serval rollout …` means.
pub fn if_connection_lost(command: &RolloutCommand) -> String {
    let model = match command {
        RolloutCommand::Status(_) | RolloutCommand::History(_) | RolloutCommand::Watch(_) => {
            return super::NOTHING_CHANGED.to_string();
        }
        RolloutCommand::Alias(args) => &args.model,
        RolloutCommand::Canary(args) => &args.model,
        RolloutCommand::Promote(args) | RolloutCommand::Clear(args) => &args.model,
        RolloutCommand::Rollback(args) => &args.model,
        RolloutCommand::Start(args) => &args.model,
        RolloutCommand::Shadow(args) => &args.model,
    };
    format!("the change may or may not have been applied: `serval rollout history --model {model}` tells")
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, CliError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|age| chrono::Duration::from_std(age).ok())
        .map(|age| Utc::now() - age)
        .ok_or_else(|| {
            CliError::Input(format!(
                "--at {text:?}: give an RFC 3339 time or an age such as 15m"
            ))
        })
}

fn to_timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn print_state(state: &pb::RolloutState, as_json: bool) {
    if as_json {
        println!("{}", json::rollout_state(state));
        return;
    }
    println!("model {} (latest version {})", state.model, state.latest_version);
    match &state.policy {
        Some(p) => match p.canary_version {
            Some(canary) => println!(
                "policy: stable v{} ({:.2}%), canary v{canary} ({:.2}%)  [revision {}]",
                p.stable_version,
                100.0 - p.canary_percent,
                p.canary_percent,
                p.revision
            ),
            None => println!(
                "policy: stable v{} (100%)  [revision {}]",
                p.stable_version, p.revision
            ),
        },
        None => println!("policy: none (requests go to the latest version)"),
    }
    if let Some(p) = &state.policy
        && let Some(shadow) = p.shadow_version
    {
        println!(
            "shadow: v{shadow} scores {:.2}% of default traffic (never answers)",
            p.shadow_percent
        );
    }
    if state.aliases.is_empty() {
        println!("aliases: none");
    }
    for alias in &state.aliases {
        println!("alias {} -> v{}", alias.name, alias.version);
    }
}

fn print_stats(stats: &pb::GetLiveStatsResponse) {
    let live = stats.replicas.iter().filter(|r| !r.stale).count().max(1);
    println!(
        "live statistics, last {} s, fleet of {live} replica{}:",
        stats.window_seconds,
        if live == 1 { "" } else { "s" }
    );
    print_version_rows(&stats.versions);
    if stats.replicas.len() < 2 {
        return;
    }
    let now = Utc::now();
    for replica in &stats.replicas {
        let published = replica
            .last_published
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .map(|at| {
                format!(
                    "published {:.1} s ago",
                    (now - at).num_milliseconds().max(0) as f64 / 1000.0
                )
            })
            .unwrap_or_else(|| "never published".to_string());
        let note = if replica.answering {
            "answering".to_string()
        } else if replica.stale {
            format!(
                "STALE: {published}, silent for over {} s, not in the fleet's figures",
                stats.stale_after_seconds
            )
        } else {
            published
        };
        println!("replica {} ({note}):", replica.replica);
        print_version_rows(&replica.versions);
    }
}

fn print_version_rows(versions: &[pb::VersionStats]) {
    println!(
        "  {:>7} {:<7} {:>9} {:>10} {:>8} {:>8} {:>10}",
        "VERSION", "ARM", "REQUESTS", "ERROR_RATE", "P50_MS", "P99_MS", "MEAN_SCORE"
    );
    for v in versions {
        println!(
            "  {:>7} {:<7} {:>9} {:>10.4} {:>8.3} {:>8.3} {:>10.4}",
            v.version,
            json::arm_name(v.arm),
            v.requests,
            v.error_rate,
            v.p50_ms,
            v.p99_ms,
            v.mean_score
        );
    }
    let with_outcomes: Vec<(&pb::VersionStats, &str, &pb::OnlineQuality)> = versions
        .iter()
        .flat_map(|v| {
            let live = v.online.as_ref().map(|q| (v, "live", q));
            let shadow = v.shadow.as_ref().map(|q| (v, "shadow", q));
            live.into_iter().chain(shadow)
        })
        .collect();
    if with_outcomes.is_empty() {
        return;
    }
    println!("online quality (predictions within the outcome window that got an outcome):");
    println!(
        "  {:>7} {:<7} {:>9} {:>8} {:>8} {:>10} {:>10} {:>9}",
        "VERSION", "SCORED", "OUTCOMES", "AUC", "LOG_LOSS", "MEAN_SCORE", "POS_RATE", "AWAITING"
    );
    for (v, scored, q) in with_outcomes {
        println!(
            "  {:>7} {:<7} {:>9} {:>8} {:>8.4} {:>10.4} {:>10.4} {:>9}",
            v.version,
            scored,
            q.outcomes,
            q.auc.map_or("-".to_string(), |auc| format!("{auc:.4}")),
            q.log_loss,
            q.mean_score,
            q.positive_rate,
            v.awaiting_outcomes
        );
    }
}

fn print_event(event: &pb::AuditEvent, as_json: bool) {
    if as_json {
        println!("{}", json::audit_event(event));
    } else {
        let at = json::timestamp(event.at.as_ref());
        println!(
            "#{} {} {} {} by {}: {} -> {}{}",
            event.id,
            at.as_str().unwrap_or("-"),
            event.model,
            event.kind,
            event.actor,
            event.before_json,
            event.after_json,
            if event.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", event.reason)
            }
        );
    }
}

pub async fn run(mut client: ServalClient, command: RolloutCommand) -> Result<(), CliError> {
    match command {
        RolloutCommand::Status(args) => {
            let state = client.rollout_state(&args.model).await?;
            let stats = client
                .live_stats(&args.model, args.window.as_secs().max(1) as u32)
                .await?;
            if args.json {
                let mut value = json::rollout_state(&state);
                value["live"] = json::live_stats(&stats);
                println!("{value}");
            } else {
                print_state(&state, false);
                print_stats(&stats);
            }
        }
        RolloutCommand::Alias(args) => {
            let state = match args.version {
                Some(version) if !args.delete => {
                    client
                        .set_alias(&args.model, &args.name, version, &args.reason)
                        .await?
                }
                _ => client.delete_alias(&args.model, &args.name, &args.reason).await?,
            };
            print_state(&state, args.json);
        }
        RolloutCommand::Canary(args) => {
            let change = Change::Canary(pb::CanaryChange {
                version: args.version,
                percent: args.percent,
            });
            print_state(
                &client.update_traffic(&args.model, change, &args.reason).await?,
                args.json,
            );
        }
        RolloutCommand::Promote(args) => {
            let change = Change::Promote(pb::PromoteChange {});
            print_state(
                &client.update_traffic(&args.model, change, &args.reason).await?,
                args.json,
            );
        }
        RolloutCommand::Rollback(args) => {
            let change = Change::Rollback(pb::RollbackChange { to_version: args.to });
            print_state(
                &client.update_traffic(&args.model, change, &args.reason).await?,
                args.json,
            );
        }
        RolloutCommand::Clear(args) => {
            let change = Change::Clear(pb::ClearChange {});
            print_state(
                &client.update_traffic(&args.model, change, &args.reason).await?,
                args.json,
            );
        }
        RolloutCommand::History(args) => {
            let at = args.at.as_deref().map(parse_time).transpose()?;
            let history = client.rollout_history(&args.model, at.map(to_timestamp)).await?;
            if args.json {
                let serving = history.serving_at.as_ref().map(|s| {
                    json!({
                        "at": json::timestamp(s.at.as_ref()),
                        "policy": json::policy(s.policy.as_ref()),
                        "latest_version": s.latest_version,
                        "default_version": s.default_version,
                    })
                });
                println!(
                    "{}",
                    json!({
                        "model": args.model,
                        "events": history.events.iter().map(json::audit_event).collect::<Vec<_>>(),
                        "serving_at": serving,
                    })
                );
            } else {
                for event in &history.events {
                    print_event(event, false);
                }
                if let Some(s) = &history.serving_at {
                    let at = json::timestamp(s.at.as_ref());
                    match (&s.policy, s.default_version) {
                        (_, 0) => println!("at {}: no version served yet", at.as_str().unwrap_or("-")),
                        (Some(p), _) => println!(
                            "at {}: stable v{}{}",
                            at.as_str().unwrap_or("-"),
                            p.stable_version,
                            p.canary_version
                                .map(|c| format!(", canary v{c} at {:.2}%", p.canary_percent))
                                .unwrap_or_default()
                        ),
                        (None, version) => println!(
                            "at {}: v{version} (the latest version; no policy yet)",
                            at.as_str().unwrap_or("-")
                        ),
                    }
                }
            }
        }
        RolloutCommand::Watch(args) => {
            let mut events = client.watch(args.model.as_deref(), args.after).await?;
            let mut seen = 0;
            while let Some(event) = events.message().await.map_err(serval_client::ClientError::from)? {
                print_event(&event, args.json);
                seen += 1;
                if args.count.is_some_and(|count| seen >= count) {
                    break;
                }
            }
        }
        RolloutCommand::Start(args) => return start(client, args).await,
        RolloutCommand::Shadow(args) => {
            let change = Change::Shadow(pb::ShadowChange {
                version: if args.off { None } else { args.version },
                percent: if args.off { 0.0 } else { args.percent },
            });
            print_state(
                &client.update_traffic(&args.model, change, &args.reason).await?,
                args.json,
            );
        }
    }
    Ok(())
}

/// Progressive delivery. Every action goes through the audited traffic
/// calls, with a reason naming the step.
async fn start(mut client: ServalClient, args: StartArgs) -> Result<(), CliError> {
    if args.steps.is_empty() || args.steps.iter().any(|s| !(0.0..=100.0).contains(s) || *s <= 0.0) {
        return Err(CliError::Input(
            "--steps: give shares in (0, 100], e.g. 5,25,50,100".into(),
        ));
    }
    let window = args.interval.as_secs().clamp(1, 600) as u32;
    let gates = LiveGates {
        min_requests: args.min_requests,
        max_error_rate: args.max_error_rate,
        max_p99_ms: args.max_p99_ms,
    };
    let mut steps = Vec::new();
    for &percent in &args.steps {
        let change = Change::Canary(pb::CanaryChange {
            version: args.version,
            percent,
        });
        let reason = format!("rollout start: step {percent}%");
        let state = client.update_traffic(&args.model, change, &reason).await?;
        let stable = state.policy.as_ref().map_or(0, |p| p.stable_version);
        if !args.json {
            println!(
                "v{} at {percent}% of traffic; watching for {:?}",
                args.version, args.interval
            );
        }
        tokio::time::sleep(args.interval).await;
        let stats = client.live_stats(&args.model, window).await?;
        let canary = stats
            .versions
            .iter()
            .find(|v| v.version == args.version)
            .cloned()
            .unwrap_or_default();
        let mut failure = live_gate_failure(&gates, &stats, args.version, percent);
        let mut online = None;
        if let (None, Some(delta)) = (&failure, args.min_online_auc_delta) {
            let judged = online_gate(&mut client, &args, window, stable, delta, percent).await?;
            failure = judged.failure;
            online = judged.aucs;
        }
        steps.push(json!({
            "percent": percent,
            "requests": canary.requests,
            "error_rate": canary.error_rate,
            "p99_ms": canary.p99_ms,
            "online": online.map(|a| json!({
                "canary_auc": a.canary,
                "canary_outcomes": a.canary_outcomes,
                "stable_auc": a.stable,
                "stable_outcomes": a.stable_outcomes,
            })),
            "passed": failure.is_none(),
        }));
        if let Some(failure) = failure {
            let reason = format!("rollout start: gate failed: {failure}");
            client
                .update_traffic(
                    &args.model,
                    Change::Rollback(pb::RollbackChange { to_version: None }),
                    &reason,
                )
                .await?;
            if args.json {
                println!(
                    "{}",
                    json!({"model": args.model, "version": args.version, "outcome": "rolled_back", "reason": failure, "steps": steps})
                );
            }
            return Err(CliError::GateFailed(format!(
                "rolled back v{}: {failure}",
                args.version
            )));
        }
        if !args.json {
            println!(
                "  gate passed: {} requests, error rate {:.4}, p99 {:.1} ms",
                canary.requests, canary.error_rate, canary.p99_ms
            );
            if let Some(a) = online {
                println!(
                    "  online AUC gate passed: v{} {:.4} ({} outcomes) vs stable v{stable} {:.4} ({} outcomes)",
                    args.version, a.canary, a.canary_outcomes, a.stable, a.stable_outcomes
                );
            }
        }
    }
    let completed = args.steps.last().is_some_and(|&last| last >= 100.0);
    if completed {
        client
            .update_traffic(
                &args.model,
                Change::Promote(pb::PromoteChange {}),
                "rollout start: all gates passed",
            )
            .await?;
    }
    let outcome = if completed { "promoted" } else { "holding" };
    if args.json {
        println!(
            "{}",
            json!({"model": args.model, "version": args.version, "outcome": outcome, "steps": steps})
        );
    } else if completed {
        println!("v{} promoted to stable", args.version);
    } else {
        println!(
            "v{} holds at {}% (add a 100 step to promote)",
            args.version,
            args.steps.last().unwrap_or(&0.0)
        );
    }
    Ok(())
}

/// Both versions' online AUC and outcome counts, as the gate judged them.
#[derive(Debug, Clone, Copy)]
struct OnlineAucs {
    canary: f64,
    canary_outcomes: u64,
    stable: f64,
    stable_outcomes: u64,
}

/// What the online AUC gate found at one step.
struct OnlineJudgement {
    failure: Option<String>,
    aucs: Option<OnlineAucs>,
}

/// The online AUC and outcome count of `version`, if it has outcomes.
fn online_auc(stats: &pb::GetLiveStatsResponse, version: u32) -> (Option<f64>, u64) {
    stats
        .versions
        .iter()
        .find(|v| v.version == version)
        .and_then(|v| v.online.as_ref())
        .map_or((None, 0), |q| (q.auc, q.outcomes))
}

/// Waits until the canary and `stable` both have --min-outcomes outcomes
/// (and both labels, so an AUC), then compares their online AUCs; fails
/// when they do not arrive within --outcome-timeout.
async fn online_gate(
    client: &mut ServalClient,
    args: &StartArgs,
    window: u32,
    stable: u32,
    delta: f64,
    percent: f64,
) -> Result<OnlineJudgement, CliError> {
    let started = std::time::Instant::now();
    let mut announced = false;
    loop {
        let stats = client.live_stats(&args.model, window).await?;
        let (canary_auc, canary_outcomes) = online_auc(&stats, args.version);
        let (stable_auc, stable_outcomes) = online_auc(&stats, stable);
        let enough = canary_outcomes >= args.min_outcomes && stable_outcomes >= args.min_outcomes;
        if let (true, Some(canary), Some(stable_auc)) = (enough, canary_auc, stable_auc) {
            let aucs = OnlineAucs {
                canary,
                canary_outcomes,
                stable: stable_auc,
                stable_outcomes,
            };
            let failure = (canary - stable_auc < delta).then(|| {
                format!(
                    "online AUC of v{} {canary:.4} ({canary_outcomes} outcomes) is {:.4} below stable v{stable}'s \
                     {stable_auc:.4} ({stable_outcomes} outcomes), more than --min-online-auc-delta {delta} allows, \
                     at {percent}%",
                    args.version,
                    stable_auc - canary
                )
            });
            return Ok(OnlineJudgement {
                failure,
                aucs: Some(aucs),
            });
        }
        if started.elapsed() >= args.outcome_timeout {
            return Ok(OnlineJudgement {
                failure: Some(format!(
                    "waited {} for outcomes at {percent}%: v{} has {canary_outcomes} and stable v{stable} \
                     {stable_outcomes} (AUC {} and {}), fewer than --min-outcomes {} with both labels",
                    humantime::format_duration(args.outcome_timeout),
                    args.version,
                    canary_auc.map_or("-".into(), |a| format!("{a:.4}")),
                    stable_auc.map_or("-".into(), |a| format!("{a:.4}")),
                    args.min_outcomes
                )),
                aucs: None,
            });
        }
        if !announced && !args.json {
            println!(
                "  waiting for outcomes: v{} has {canary_outcomes}, stable v{stable} {stable_outcomes} \
                 (need {} each)",
                args.version, args.min_outcomes
            );
            announced = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
