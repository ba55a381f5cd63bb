//! `serval report` against a real server: two versions side by side in one self-contained HTML file
//! with every chart, and (where Chromium is installed) a headless render of it.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const CHARTS: [&str; 7] = [
    "loss",
    "auc",
    "learning-rate",
    "roc",
    "pr",
    "calibration",
    "confusion",
];
const CHROMIUM: &str = "/usr/bin/chromium";

/// Rows where y mostly follows the first two columns, with a column name that needs escaping.
fn csv() -> String {
    let mut text = String::from("visits,pages & <views>,colour,y\n");
    for i in 0..160usize {
        let (visits, pages) = (i % 40, (i * 7) % 13);
        let colour = ["red", "blue", "green"][i % 3];
        let y = u8::from(visits + pages + (i * 5) % 9 > 30);
        text.push_str(&format!("{visits},{pages},{colour},{y}\n"));
    }
    text
}

fn charts(html: &str, kind: &str) -> usize {
    html.matches(&format!("data-chart=\"{kind}\"")).count()
}

#[tokio::test]
async fn report_compares_two_versions_in_one_self_contained_page() {
    let fx = Fixture::start().await;
    let data = fx.write("buyers.csv", &csv());
    for hidden in ["16,8", "8"] {
        let args = [
            "train",
            "--model",
            "buyers",
            "--data",
            &data,
            "--label",
            "y",
            "--positive",
            "1",
            "--epochs",
            "3",
        ];
        fx.ok(&[&args[..], &["--hidden", hidden]].concat()).await;
    }
    let listed = last_json_line(&fx.ok(&["models", "--model", "buyers", "--json"]).await);
    let auc = listed["models"][0]["versions"][1]["metrics"]["auc"]
        .as_f64()
        .unwrap();

    let out = fx.dir.path().join("r.html");
    let out_arg = out.to_string_lossy().into_owned();
    let printed = fx
        .ok(&[
            "report",
            "--model",
            "buyers",
            "--version",
            "2",
            "--compare",
            "1",
            "--out",
            &out_arg,
        ])
        .await;
    assert_eq!(printed.trim(), out_arg);
    let html = std::fs::read_to_string(&out).expect("report written");

    for kind in CHARTS {
        assert_eq!(charts(&html, kind), 2, "{kind} chart for both versions");
    }
    let importance = charts(&html, "importance");
    assert!(
        importance == 0 || importance == 2,
        "importance charts: {importance}"
    );
    assert!(html.contains("<h1>buyers <span class=\"muted\">version 2 vs version 1</span></h1>"));
    assert!(html.contains(&format!("{auc:.4}")), "headline AUC {auc:.4}");
    assert!(
        html.contains("pages &amp; &lt;views&gt;"),
        "column names are escaped"
    );
    assert!(!html.contains("<views>"));
    for needle in ["<script", "<link", "<img", "http://", "https://", "url("] {
        assert!(!html.contains(needle), "{needle} in a self-contained page");
    }

    // A missing version is an error naming it, and writes nothing.
    let missing = fx.dir.path().join("missing.html");
    let output = fx
        .serval(&[
            "report",
            "--model",
            "buyers",
            "--version",
            "9",
            "--out",
            &missing.to_string_lossy(),
        ])
        .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("NOT_FOUND"));
    assert!(!missing.exists());

    if Path::new(CHROMIUM).exists() {
        let png = fx.dir.path().join("r.png");
        let bytes = screenshot(&out, &png, fx.dir.path()).await;
        assert!(bytes > 20_000, "screenshot of {bytes} bytes looks empty");
    } else {
        eprintln!("note: {CHROMIUM} is not installed; skipping the headless render of the report");
    }
}

/// Renders `html` with headless Chromium to `png`, returning the PNG's size.
async fn screenshot(html: &Path, png: &Path, scratch: &Path) -> u64 {
    let profile = tempfile::tempdir_in(scratch).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--screenshot={}", png.display()),
                "--window-size=1400,2400",
                &format!("file://{}", html.display()),
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finishes within two minutes")
    .expect("chromium runs");
    assert!(
        output.status.success() && png.exists(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    bytes.len() as u64
}
