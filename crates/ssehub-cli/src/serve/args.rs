//! `ssehub serve`'s flags, and how they override the configuration: defaults, then the
//! file (`--config`), then the environment, then these flags. A flag left out changes
//! nothing, so every flag is optional here; the defaults are the config's.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::{parse_seconds, Config};

#[derive(clap::Args, Debug, Default)]
pub(crate) struct Args {
    /// A TOML configuration file (see ssehub.example.toml); flags override it.
    #[arg(long, env = "SSEHUB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Port to listen on [default: 2015].
    #[arg(long, env = "SSEHUB_PORT")]
    pub port: Option<u16>,
    /// Address to bind (`0.0.0.0` to be reachable from other machines) [default: 127.0.0.1].
    #[arg(long, env = "SSEHUB_BIND")]
    pub bind: Option<IpAddr>,
    /// Require `Authorization: Bearer TOKEN` on `POST /publish` and `GET /stats`.
    #[arg(
        long,
        env = "SSEHUB_PUBLISH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub publish_token: Option<String>,
    /// The largest `POST /publish` body, in bytes [default: 65536] (an event is also
    /// refused, with 413, when it is over 512 KiB once encoded).
    #[arg(long, value_name = "BYTES")]
    pub max_publish_body: Option<usize>,
    /// Serve this folder at `/` instead of the built-in demo page.
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Seconds between `tick` events to `__all` [default: 1] (0 turns the ticker off).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub tick_interval: Option<Duration>,
    /// Seconds between `: ping` comments on idle streams [default: 15] (0: off).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub keep_alive: Option<Duration>,
    /// Seconds a busy stream lets events gather before its next write [default: 0.02].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub batch_window: Option<Duration>,
    /// Events each room's history keeps for clients that reconnect [default: 1000].
    #[arg(long, value_name = "EVENTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub history_size: Option<u64>,
    /// Seconds an event stays in its room's history [default: 600].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub history_age: Option<Duration>,
    /// Keep the history on disk in this directory, so that clients resume after a
    /// restart with nothing missing (also SSEHUB_HISTORY_DIR; the Mercure hub's goes to
    /// DIR/mercure).
    #[arg(long, value_name = "DIR")]
    pub history_dir: Option<PathBuf>,
    /// Keep no history: reconnecting clients get live events only.
    #[arg(long)]
    pub no_history: bool,
    /// Join the nodes that share this Redis (`redis://HOST:PORT/DB`; also
    /// SSEHUB_REDIS_URL).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// The prefix of every key this hub keeps in Redis [default: ssehub].
    #[arg(long, value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
    /// Serve TLS (HTTP/2 and HTTP/1.1) with this PEM certificate chain.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate for localhost made at start (development only).
    #[arg(long, conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Check JSON Web Tokens signed with this HMAC secret (HS256): auth on for
    /// subscribing and publishing.
    #[arg(
        long,
        env = "SSEHUB_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub jwt_secret: Option<String>,
    /// Check JSON Web Tokens with this PEM public key (RS256, ES256 or EdDSA by its
    /// type): auth on for subscribing and publishing.
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// Let clients without a token subscribe to rooms matching this selector (`news`,
    /// `public.*`, `*`); repeatable.
    #[arg(long, value_name = "ROOM-SELECTOR")]
    pub allow_anonymous_subscribe: Vec<String>,
    /// Accept publishes without a token when auth is on.
    #[arg(long)]
    pub allow_anonymous_publish: bool,
    #[command(flatten)]
    pub observe: super::observe::ObserveArgs,
}

#[derive(Parser)]
struct Standalone {
    #[command(flatten)]
    args: Args,
}

impl Args {
    /// The arguments of a bare `ssehub`: none, but those of the environment.
    pub(crate) fn from_env() -> anyhow::Result<Args> {
        Ok(Standalone::try_parse_from(["ssehub"])?.args)
    }

    /// The effective configuration: the file, the environment, then these flags.
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref())?;
        self.apply(&mut c);
        c.validate()?;
        Ok(c)
    }

    fn apply(&self, c: &mut Config) {
        if let Some(port) = self.port {
            c.server.listen.set_port(port);
        }
        if let Some(ip) = self.bind {
            c.server.listen.set_ip(ip);
        }
        // An empty token (`SSEHUB_PUBLISH_TOKEN=`) is no token, as it always was.
        let token = self.publish_token.clone().filter(|t| !t.is_empty());
        some(&mut c.auth.publish_token, &token);
        set(&mut c.limits.max_publish_body, self.max_publish_body);
        some(&mut c.demo.static_dir, &self.static_dir);
        set(&mut c.demo.tick_interval, self.tick_interval);
        set(&mut c.sse.keep_alive, self.keep_alive);
        set(&mut c.sse.batch_window, self.batch_window);
        let size = self
            .history_size
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        set(&mut c.history.max_events, size);
        set(&mut c.history.max_age, self.history_age);
        c.history.enabled &= !self.no_history;
        some(&mut c.history.dir, &self.history_dir);
        some(&mut c.redis.url, &self.redis);
        set(&mut c.redis.prefix, self.redis_prefix.clone());
        some(&mut c.tls.cert, &self.tls_cert);
        some(&mut c.tls.key, &self.tls_key);
        c.tls.self_signed |= self.tls_self_signed;
        some(&mut c.auth.jwt_secret, &self.jwt_secret);
        some(&mut c.auth.jwt_public_key, &self.jwt_public_key);
        c.auth
            .allow_anonymous_subscribe
            .extend(self.allow_anonymous_subscribe.iter().cloned());
        c.auth.allow_anonymous_publish |= self.allow_anonymous_publish;
        self.observe.apply(&mut c.observe);
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn some<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}
