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
        client.update_traffic(&args.model, change, &reason).await?;
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
        let failure = live_gate_failure(&gates, &stats, args.version, percent);
        steps.push(json!({
            "percent": percent,
            "requests": canary.requests,
            "error_rate": canary.error_rate,
            "p99_ms": canary.p99_ms,
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
