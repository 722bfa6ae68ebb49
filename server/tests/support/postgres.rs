//! A real PostgreSQL server for tests, started from the machine's packages (`postgresql`) in a
//! temporary directory, on a free loopback port, and always stopped.
use std::path::PathBuf;
use std::process::Command;

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Root may not run PostgreSQL; then every command runs as this user.
    run_as: Option<String>,
    running: bool,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = server_bin_dir();
        let dir = tempfile::Builder::new().prefix("shipshape-pg-").tempdir().expect("creating a temp dir");
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let (uid, gid) = ids_of(user);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("handing the temp dir to the postgres user");
        }
        let mut pg = Postgres { bin, data: dir.path().join("data"), port: free_port(), run_as, running: false, _dir: dir };
        let data = pg.data.display().to_string();
        pg.run("initdb", &["--pgdata", &data, "--auth", "trust", "--username", "shipshape", "--no-sync"]);
        pg.start_again();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://shipshape@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server again on the same port and data.
    pub fn start_again(&mut self) {
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", self.port, self.data.parent().unwrap().display());
        let log = self.data.parent().unwrap().join("postgres.log").display().to_string();
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["start", "--pgdata", &data, "--wait", "--log", &log, "--options", &options]);
        self.running = true;
    }

    pub fn stop(&mut self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["stop", "--pgdata", &data, "--wait", "--mode", "fast"]);
        self.running = false;
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command.args(args).output().unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data.display().to_string();
            // Best effort: an immediate stop, so a failed test never leaves a server behind.
            let _ = std::panic::catch_unwind(|| self.run("pg_ctl", &["stop", "--pgdata", &data, "--mode", "immediate"]));
        }
    }
}

/// Debian keeps server binaries out of PATH, in /usr/lib/postgresql/<major>/bin; take the newest.
fn server_bin_dir() -> PathBuf {
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!("PostgreSQL server binaries (initdb, pg_ctl) not found: install them with `apt-get install postgresql` (.ci/run does)")
    })
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("running id");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn ids_of(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().expect("running id");
        assert!(out.status.success(), "no `{user}` user to run PostgreSQL as (it comes with the postgresql package)");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
