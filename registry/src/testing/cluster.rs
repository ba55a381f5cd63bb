//! A throwaway PostgreSQL cluster for tests: the installed binaries, a
//! temporary data directory and a free loopback port, run by an
//! unprivileged user when the tests run as root (`initdb` refuses root).
//!
//! It does not decide whether PostgreSQL tests run or are skipped; that is
//! the parent module's shared-server logic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where Debian's `postgresql` package puts its server binaries, one
/// directory per major version.
const DEBIAN_BINARIES: &str = "/usr/lib/postgresql";

/// Tries at a free port before giving up: another process may take the
/// port between choosing it and the server binding it.
const START_ATTEMPTS: usize = 3;

/// A PostgreSQL server of its own, stopped and removed when dropped.
#[derive(Debug)]
pub struct TestCluster {
    binaries: PathBuf,
    /// Temporary directory holding the data directory, socket and log.
    root: PathBuf,
    port: u16,
    /// The user that runs the server when the tests run as root.
    owner: Option<String>,
    /// Stops the server and removes `root` once this process has gone,
    /// however it ends (a panic, a signal, or the end of `main` without
    /// running destructors of statics).
    watchdog: Option<Child>,
}

impl TestCluster {
    /// The directory holding `initdb` and `pg_ctl`: the one on `PATH`,
    /// else the newest under `/usr/lib/postgresql/*/bin`.
    pub fn binaries() -> Option<PathBuf> {
        find_binaries(std::env::var_os("PATH"), Path::new(DEBIAN_BINARIES))
    }

    /// Initialises and starts a new cluster on a free loopback port.
    pub fn start() -> Result<Self, String> {
        let binaries = Self::binaries().ok_or_else(|| {
            format!(
                "no PostgreSQL binaries on PATH or in {DEBIAN_BINARIES}/*/bin (apt-get install postgresql)"
            )
        })?;
        let owner = unprivileged_owner()?;
        let root = tempfile::Builder::new()
            .prefix("serval-test-postgres-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?
            .keep();
        let mut cluster = TestCluster {
            binaries,
            root,
            port: 0,
            owner,
            watchdog: None,
        };
        if let Some(owner) = &cluster.owner {
            let (uid, gid) = user_ids(owner)?;
            std::os::unix::fs::chown(&cluster.root, Some(uid), Some(gid))
                .map_err(|e| format!("chown {} to {owner}: {e}", cluster.root.display()))?;
        }
        cluster.initdb()?;
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_port()?;
            match cluster.resume() {
                Ok(()) => {
                    cluster.watchdog = cluster.spawn_watchdog().ok();
                    return Ok(cluster);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// A URL for the `postgres` superuser's default database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server, keeping its data for [`TestCluster::resume`].
    pub fn halt(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "fast", "-w", "stop"])
    }

    /// Starts the server (again) on its port.
    pub fn resume(&self) -> Result<(), String> {
        // fsync off and many connections: tests start several servers and
        // throw the data away.
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=300",
            self.port,
            self.root.display()
        );
        let log = self.root.join("server.log");
        self.pg_ctl(&[
            "-l",
            &log.to_string_lossy(),
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "start",
        ])
        .map_err(|error| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{error}\n{}", tail(&log, 20))
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn initdb(&self) -> Result<(), String> {
        let data = self.data_dir();
        let output = self
            .command("initdb")
            .args([
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run initdb: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "initdb failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        // No pipes: the server inherits pg_ctl's descriptors, and a pipe
        // it held open would keep whoever reads it waiting.
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("run pg_ctl: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("pg_ctl {} failed ({status})", args.last().unwrap_or(&"")))
        }
    }

    /// `program` from the binaries directory, run by the owner if there is
    /// one, from the cluster's directory (the current one may be private).
    fn command(&self, program: &str) -> Command {
        let path = self.binaries.join(program);
        let mut command = match &self.owner {
            Some(owner) => {
                let mut command = Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        };
        command.current_dir(&self.root);
        command
    }

    /// A shell that waits for this process to end, then stops the server
    /// and removes its directory.
    fn spawn_watchdog(&self) -> std::io::Result<Child> {
        let stop = self.command("pg_ctl");
        let mut line: Vec<String> = vec![stop.get_program().to_string_lossy().into_owned()];
        line.extend(stop.get_args().map(|a| a.to_string_lossy().into_owned()));
        let stop_line = line.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop_line} -D {data} -m immediate -w stop >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
            data = shell_quote(&self.data_dir().to_string_lossy()),
            root = shell_quote(&self.root.to_string_lossy()),
        );
        Command::new("sh")
            .args(["-c", &script])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The first directory of `path` holding `initdb` and `pg_ctl`, else the
/// newest `<major>/bin` under `debian_root` that does.
fn find_binaries(path: Option<std::ffi::OsString>, debian_root: &Path) -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = path.and_then(|path| std::env::split_paths(&path).find(|dir| has_both(dir)));
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian_root)
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                has_both(&bin).then_some((major, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

/// The user to run PostgreSQL as: none when not root; `postgres` (which
/// Debian's package creates), else `nobody`, when root.
fn unprivileged_owner() -> Result<Option<String>, String> {
    let uid = command_output("id", &["-u"])?;
    if uid != "0" {
        return Ok(None);
    }
    for user in ["postgres", "nobody"] {
        if command_output("id", &["-u", user]).is_ok() {
            return Ok(Some(user.to_string()));
        }
    }
    Err("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL".into())
}

fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let parse = |flag: &str| -> Result<u32, String> {
        command_output("id", &[flag, user])?
            .parse()
            .map_err(|e| format!("id {flag} {user}: {e}"))
    };
    Ok((parse("-u")?, parse("-g")?))
}

fn command_output(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{program} {args:?} failed"));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("1\n2\n3\n", 2), "2\n3");
        assert_eq!(tail("", 2), "");
    }

    fn fake_binaries(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for program in ["initdb", "pg_ctl"] {
            std::fs::write(dir.join(program), "").unwrap();
        }
    }

    #[test]
    fn binaries_come_from_path_first_then_the_newest_debian_version() {
        let root = tempfile::tempdir().unwrap();
        let debian = root.path().join("postgresql");
        let nothing = std::env::join_paths([root.path().join("empty")]).ok();
        assert_eq!(find_binaries(nothing.clone(), &debian), None, "nothing installed");

        fake_binaries(&debian.join("9/bin"));
        fake_binaries(&debian.join("15/bin"));
        std::fs::create_dir_all(debian.join("16/bin")).unwrap(); // no programs
        assert_eq!(find_binaries(nothing, &debian), Some(debian.join("15/bin")));

        let local = root.path().join("local/bin");
        fake_binaries(&local);
        let path = std::env::join_paths([root.path().join("empty"), local.clone()]).ok();
        assert_eq!(find_binaries(path, &debian), Some(local));
    }
}
