//! The README's quickstart, command by command, against a real server: every
//! command in its shell block runs in order, from a working directory where
//! `examples/` resolves as it does in a checkout, and what each prints is
//! checked. Each step names the command it expects next in the README, so a
//! README edit that this test does not follow (or the reverse) fails here.

use std::path::{Path, PathBuf};

use crate::common::*;

/// The README's inline record, with its line breaks collapsed.
const RECORD: &str = r#"{"PageValues": 40, "ExitRates": 0.02, "BounceRates": 0.01, "Month": "Nov", "Weekend": false, "VisitorType": "Returning_Visitor", "ProductRelated": 20, "ProductRelated_Duration": 600, "Administrative": 0, "Administrative_Duration": 0, "Informational": 0, "Informational_Duration": 0, "SpecialDay": 0, "OperatingSystems": 2, "Browser": 2, "Region": 1, "TrafficType": 2}"#;

const DATA: &str = "examples/data/online_shoppers_intention.csv";

#[tokio::test]
async fn the_readme_quickstart_runs_as_shown() {
    let fx = Fixture::start().await;
    let mut quickstart = Quickstart::new(&fx);

    // The alias stands for the binary cargo built for this test.
    quickstart.expect(&["alias", "serval=cargo run -q --release --bin serval --"]);

    let trained = quickstart
        .serval(&[
            "train",
            "--model",
            "shoppers",
            "--data",
            DATA,
            "--label",
            "Revenue",
            "--positive",
            "TRUE",
        ])
        .await;
    assert!(trained.contains("Registered shoppers version 1"), "{trained}");
    assert!(trained.contains("validation: AUC"), "{trained}");

    let models = quickstart.serval(&["models"]).await;
    let rows: Vec<Vec<&str>> = models
        .lines()
        .map(|line| line.split_whitespace().collect())
        .filter(|fields: &Vec<&str>| fields.first() == Some(&"shoppers"))
        .collect();
    assert_eq!(rows.len(), 1, "{models}");
    // MODEL VERSION CREATED ROWS AUC ACCURACY F1 LOG_LOSS
    assert_eq!(rows[0][1], "1", "{models}");
    assert_eq!(rows[0][3], "12330", "{models}");
    let auc: f64 = rows[0][4].parse().expect("an AUC");
    assert!(auc >= 0.9, "{models}");

    // `head -n 6 FILE > some.csv`: the header and five data rows.
    quickstart.expect(&["head", "-n", "6", DATA, ">", "some.csv"]);
    let data = std::fs::read_to_string(quickstart.dir.join(DATA)).unwrap();
    let head: String = data.split_inclusive('\n').take(6).collect();
    std::fs::write(quickstart.dir.join("some.csv"), head).unwrap();

    let csv = quickstart
        .serval(&["predict", "--model", "shoppers", "--data", "some.csv"])
        .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.first(), Some(&"score,label"), "{csv}");
    assert_eq!(lines.len(), 1 + 5, "one line per data row: {csv}");
    for line in &lines[1..] {
        let (score, label) = line.split_once(',').expect("score,label");
        let score: f64 = score.parse().expect("a probability");
        assert!((0.0..=1.0).contains(&score), "{csv}");
        assert!(label == "0" || label == "1", "{csv}");
    }

    let scored = last_json_line(
        &quickstart
            .serval(&["predict", "--model", "shoppers", "--data", "some.csv", "--json"])
            .await,
    );
    assert_eq!(scored["model"], "shoppers");
    assert_eq!(scored["version"], 1);
    assert_eq!(scored["arm"], "latest", "{scored}");
    assert_eq!(scored["scores"].as_array().unwrap().len(), 5, "{scored}");
    assert_eq!(scored["labels"].as_array().unwrap().len(), 5, "{scored}");

    let record = quickstart
        .serval(&[
            "predict",
            "--model",
            "shoppers",
            "--version",
            "1",
            "--records",
            RECORD,
        ])
        .await;
    let lines: Vec<&str> = record.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {record}");

    let trained = quickstart
        .serval(&[
            "train",
            "--model",
            "shoppers",
            "--data",
            DATA,
            "--label",
            "Revenue",
            "--positive",
            "TRUE",
            "--class-weighting",
        ])
        .await;
    assert!(trained.contains("Registered shoppers version 2"), "{trained}");

    let canary = quickstart
        .serval(&[
            "rollout",
            "canary",
            "--model",
            "shoppers",
            "--version",
            "2",
            "--percent",
            "10",
            "--reason",
            "class weighting",
        ])
        .await;
    assert!(
        canary.contains("policy: stable v1 (90.00%), canary v2 (10.00%)"),
        "{canary}"
    );

    let status = quickstart
        .serval(&["rollout", "status", "--model", "shoppers"])
        .await;
    assert!(
        status.contains("policy: stable v1 (90.00%), canary v2 (10.00%)"),
        "{status}"
    );
    assert!(status.contains("live statistics"), "{status}");

    let keyed = last_json_line(
        &quickstart
            .serval(&[
                "predict",
                "--model",
                "shoppers",
                "--routing-key",
                "user-42",
                "--data",
                "some.csv",
                "--json",
            ])
            .await,
    );
    let arm = (keyed["arm"].as_str().unwrap(), keyed["version"].as_u64().unwrap());
    assert!(arm == ("stable", 1) || arm == ("canary", 2), "{keyed}");
    assert_eq!(keyed["scores"].as_array().unwrap().len(), 5, "{keyed}");

    let written = quickstart
        .serval(&[
            "report",
            "--model",
            "shoppers",
            "--version",
            "2",
            "--compare",
            "1",
            "--out",
            "report.html",
        ])
        .await;
    assert_eq!(written.trim(), "report.html");
    let html = std::fs::read_to_string(quickstart.dir.join("report.html")).unwrap();
    assert!(html.len() > 1000, "{html}");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("shoppers"));

    quickstart.finish();
}

/// The quickstart's commands as the README shows them, and a working
/// directory to run them in.
struct Quickstart<'a> {
    fx: &'a Fixture,
    /// Holds `examples` (a link to the checkout's) and what the commands write.
    dir: PathBuf,
    commands: std::vec::IntoIter<Vec<String>>,
}

impl<'a> Quickstart<'a> {
    fn new(fx: &'a Fixture) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let dir = fx.dir.path().join("quickstart");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(
            root.join("examples").canonicalize().unwrap(),
            dir.join("examples"),
        )
        .unwrap();
        Quickstart {
            fx,
            dir,
            commands: shell_commands(quickstart_block(&readme)).into_iter(),
        }
    }

    /// Asserts that the README's next command is `expected` (whitespace
    /// within a word aside) and returns the README's words.
    fn expect(&mut self, expected: &[&str]) -> Vec<String> {
        let Some(shown) = self.commands.next() else {
            panic!("README quickstart ends before `{}`", expected.join(" "));
        };
        assert_eq!(
            shown.iter().map(|w| collapse(w)).collect::<Vec<_>>(),
            expected.iter().map(|w| collapse(w)).collect::<Vec<_>>(),
            "README quickstart and this test differ: update both together"
        );
        shown
    }

    /// Runs the README's next command, which must be `serval` with `args`;
    /// asserts success and returns stdout.
    async fn serval(&mut self, args: &[&str]) -> String {
        let shown = self.expect(&[&["serval"], args].concat());
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_serval"))
            .args(&shown[1..])
            .current_dir(&self.dir)
            .env("SERVAL_SERVER", self.fx.server.url())
            .output()
            .await
            .expect("serval runs");
        assert!(
            output.status.success(),
            "{shown:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Asserts that every command of the README's quickstart has run.
    fn finish(mut self) {
        if let Some(next) = self.commands.next() {
            panic!(
                "README quickstart shows `{}`, which this test does not run",
                next.join(" ")
            );
        }
    }
}

fn collapse(word: &str) -> String {
    word.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first ```sh block after the "## Quickstart" heading.
fn quickstart_block(readme: &str) -> &str {
    let section = &readme[readme.find("\n## Quickstart\n").expect("a Quickstart section")..];
    let start = section.find("\n```sh\n").expect("a sh block in Quickstart") + "\n```sh\n".len();
    let end = start + section[start..].find("\n```").expect("the block's end");
    &section[start..end]
}

/// Splits shell text into commands of words: one command per line, `\` at
/// a line's end continuing it, '…' and "…" quoting (newlines included), and
/// `#` comments. Enough for the README, not a shell.
fn shell_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let text = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(other) => text.push(other),
                        None => panic!("unterminated {c} in the README quickstart"),
                    }
                }
            }
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
                words.extend(word.take());
            }
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|&next| next != '\n') {
                    chars.next();
                }
            }
            '\n' => {
                words.extend(word.take());
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word.take());
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}
