//! A moto server of its own for each test, started by `scripts/moto/run.sh` on a free
//! 127.0.0.1 port and killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::Builder::new()
            .prefix("bakery-moto-")
            .tempdir()
            .expect("temp dir");
        let port_file = dir.path().join("port");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let child = Command::new(root.join("scripts/moto/run.sh"))
            .arg("--port")
            .arg("0")
            .arg("--port-file")
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot run scripts/moto/run.sh");
        let mut moto = Moto {
            child,
            endpoint: String::new(),
            port: 0,
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                if let Ok(port) = text.trim().parse::<u16>() {
                    moto.port = port;
                    moto.endpoint = format!("http://127.0.0.1:{port}");
                    break;
                }
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto exited ({status}); run scripts/moto/setup.sh. Its log:\n{}",
                    moto.log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "moto did not start within 180s:\n{}",
                moto.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The server's process id (`scripts/moto/run.sh` execs Python).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect moto");
        s.write_all(
            b"POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .expect("reset moto");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"),
            "{out}"
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
