//! `ssehub bench --spawn-nchan`: the same run against Nginx with Nchan, side by side with
//! ssehub (Debian's `nginx` and `libnginx-mod-nchan`). The bench writes a configuration
//! into a fresh directory, makes a certificate for `localhost` and `127.0.0.1` with rcgen
//! when the URL is `https://` (listening with TLS, ALPN `h2` and `http/1.1`), and starts
//! one nginx process (`master_process off`: the one process whose CPU time and memory
//! are measured), pinned like a spawned ssehub. It is stopped, and its directory removed,
//! when the run ends.
//!
//! The locations mirror ssehub's: `GET /sse?room=R` is an EventSource subscriber of
//! channel `R`, `POST /publish?room=R` publishes to it (answering, as JSON, the channel's
//! subscriber count, which the bench takes for the deliveries), and `/stats` is
//! `nchan_stub_status` (its `subscribers` line is the connection count).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

use crate::hub_client::Target;

/// Where Debian installs the module.
const MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// A running nginx child; killed, reaped and its directory removed when dropped.
pub(super) struct NchanProcess {
    child: Child,
    dir: PathBuf,
}

impl NchanProcess {
    /// Start nginx with Nchan on `target`'s address (TLS if `target.tls`), pinned with
    /// `taskset -c <cpus>` unless `cpus` is empty.
    pub(super) fn spawn(target: &Target, cpus: &str) -> anyhow::Result<NchanProcess> {
        if !Path::new(MODULE).exists() {
            bail!("{MODULE} is missing: install nginx and libnginx-mod-nchan (apt-get install nginx libnginx-mod-nchan)");
        }
        let dir = std::env::temp_dir().join(format!("ssehub-bench-nchan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tls = if target.tls {
            let cert = rcgen::generate_simple_self_signed(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ])
            .context("making a certificate")?;
            std::fs::write(dir.join("cert.pem"), cert.cert.pem())?;
            std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem())?;
            true
        } else {
            false
        };
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(target.addr, &dir, tls))?;
        let mut cmd = if cpus.is_empty() {
            Command::new("nginx")
        } else {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg("nginx");
            c
        };
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting nginx ({cmd:?}); is nginx installed?"))?;
        Ok(NchanProcess { child, dir })
    }

    /// The process id (of `taskset`, which execs nginx: the same process).
    pub(super) fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NchanProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One nginx process, no logs but errors, Nchan's three locations.
fn config(addr: SocketAddr, dir: &Path, tls: bool) -> String {
    let listen = if tls {
        format!(
            "listen {addr} ssl http2;\n        ssl_certificate {d}/cert.pem;\n        \
             ssl_certificate_key {d}/key.pem;",
            d = dir.display()
        )
    } else {
        format!("listen {addr};")
    };
    format!(
        r#"load_module {MODULE};
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{
    worker_connections 60000;
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    server {{
        {listen}
        location = /sse {{
            nchan_subscriber eventsource;
            nchan_channel_id $arg_room;
        }}
        location = /publish {{
            nchan_publisher;
            nchan_channel_id $arg_room;
            nchan_message_buffer_length 16;
        }}
        location = /stats {{
            nchan_stub_status;
        }}
    }}
}}
"#,
        d = dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_the_three_locations() {
        let c = config("127.0.0.1:2018".parse().unwrap(), Path::new("/tmp/x"), true);
        assert!(c.contains("listen 127.0.0.1:2018 ssl http2;"));
        assert!(c.contains("ssl_certificate /tmp/x/cert.pem;"));
        for l in [
            "location = /sse",
            "location = /publish",
            "location = /stats",
        ] {
            assert!(c.contains(l), "{l}");
        }
        assert!(
            config("127.0.0.1:1".parse().unwrap(), Path::new("/t"), false)
                .contains("listen 127.0.0.1:1;")
        );
    }
}
