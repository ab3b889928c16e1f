//! `ssehub serve`'s configuration: a TOML file (`--config FILE`, `SSEHUB_CONFIG`), then
//! (with the Mercure hub on) the reference Mercure hub's container variables
//! (`MERCURE_*`, `SERVER_NAME`: `compat.rs`, `directives.rs`), then the environment
//! (`SSEHUB_<SECTION>_<KEY>`, `env.rs`), then the flags (`serve.rs`).
//!
//! Every key has a default, so an empty file (or none) is today's zero-configuration
//! demo on loopback. `ssehub.example.toml` at the repository's root documents every key;
//! a test parses it. A key this program does not know is an error (never ignored: a typo
//! in `allow_anonymous_publish` must not leave publishing open), and so is a value that
//! does not fit; the message names the key, the value and why, but never the value of a
//! key that is unknown or looks like a secret (`secrets.rs`).

mod compat;
mod directives;
mod env;
mod mercure;
mod secrets;
mod units;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use ssehub::RoomSelector;

pub(crate) use mercure::{MercureSection, Role};
pub(crate) use units::parse_seconds;

/// The whole configuration, section by section.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub server: ServerSection,
    pub tls: TlsSection,
    pub auth: AuthSection,
    pub cors: CorsSection,
    pub sse: SseSection,
    pub limits: LimitsSection,
    pub history: HistorySection,
    pub redis: RedisSection,
    pub demo: DemoSection,
    pub observe: ObserveSection,
    pub log: LogSection,
    pub mercure: MercureSection,
    /// What loading found worth a warning (old variable names, directives accepted but
    /// not applied), said once logging is up.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The keys set from the reference Mercure hub's variables, and from which: errors
    /// about them name the variable too.
    #[serde(skip)]
    pub origins: Vec<(String, String)>,
    /// The `SERVER_NAME` that asked for HTTPS, if one did: `[tls]` must then have a
    /// certificate.
    #[serde(skip)]
    pub https_server_name: Option<String>,
}

/// Listeners and connection timeouts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerSection {
    /// The main listener; it speaks TLS when `[tls]` has a certificate.
    pub listen: SocketAddr,
    /// A second listener, plain HTTP (say `0.0.0.0:80` beside TLS on 443).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub also_listen: Option<SocketAddr>,
    #[serde(with = "units::seconds")]
    pub header_timeout: Duration,
    /// 0: never.
    #[serde(with = "units::seconds")]
    pub idle_timeout: Duration,
    /// How long shutdown waits for streams to flush.
    #[serde(with = "units::seconds")]
    pub grace: Duration,
    /// Connections the kernel queues before the server accepts them (0: the system's
    /// maximum, `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Host names the server answers to besides loopback's (`localhost`, `127.0.0.1`,
    /// `[::1]`), each with or without a port; `["*"]`: any. The check is on when every
    /// listener is on loopback, or when names are given.
    #[serde(with = "units::list")]
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 2015)),
            also_listen: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(2),
            listen_backlog: 0,
            allowed_hosts: Vec::new(),
        }
    }
}

/// The main listener's certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TlsSection {
    /// PEM chain, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// A certificate for `localhost` made at start (development only).
    pub self_signed: bool,
    /// How often the files are checked for a change (0: on SIGHUP only).
    #[serde(with = "units::seconds")]
    pub watch_interval: Duration,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert: None,
            key: None,
            self_signed: false,
            watch_interval: Duration::from_secs(5),
        }
    }
}

/// Who may subscribe, publish and operate. Auth is on when a JWT key is given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthSection {
    /// HMAC secret (HS256 unless `jwt_algorithm` says HS384 or HS512).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// PEM public key file (RS256, ES256 or EdDSA by the key's type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    /// Another algorithm of the key's family (HS384, RS512, PS256, ES384, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(with = "units::seconds")]
    pub leeway: Duration,
    pub require_exp: bool,
    /// "" reads no cookie.
    pub cookie: String,
    /// "" reads no query parameter.
    pub query_parameter: String,
    #[serde(with = "units::list")]
    pub allow_anonymous_subscribe: Vec<String>,
    pub allow_anonymous_publish: bool,
    /// A static token for the operator's endpoints (`/stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// A static token for `/publish` and the operator's endpoints (the demo's
    /// `--publish-token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_token: Option<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            jwt_secret: None,
            jwt_public_key: None,
            jwt_algorithm: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
            require_exp: true,
            cookie: "ssehub_token".into(),
            query_parameter: "access_token".into(),
            allow_anonymous_subscribe: Vec::new(),
            allow_anonymous_publish: false,
            admin_token: None,
            publish_token: None,
        }
    }
}

impl AuthSection {
    /// Whether tokens are checked (a JWT key is configured).
    pub(crate) fn enabled(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some()
    }
}

/// Which web pages may use the hub from their visitors' browsers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CorsSection {
    /// Origins (`https://app.example`), or `["*"]` for any page (then without
    /// credentials). Empty: the hub's own pages only.
    #[serde(with = "units::list")]
    pub allowed_origins: Vec<String>,
    /// Let listed pages send cookies (cookie tokens from another origin).
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight's answer.
    #[serde(with = "units::seconds")]
    pub max_age: Duration,
}

impl Default for CorsSection {
    fn default() -> Self {
        CorsSection {
            allowed_origins: Vec::new(),
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

/// What the slow-consumer policy does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SlowConsumer {
    Close,
    DropEvent,
}

/// The SSE endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SseSection {
    pub prefix: String,
    /// 0: off.
    #[serde(with = "units::seconds")]
    pub keep_alive: Duration,
    /// The reconnection delay hint at the start of each stream (0: none).
    #[serde(with = "units::seconds")]
    pub retry: Duration,
    /// At shutdown each stream is told a `retry:` drawn from
    /// `shutdown_retry_min..=shutdown_retry_max`, so clients come back spread out.
    #[serde(with = "units::seconds")]
    pub shutdown_retry_min: Duration,
    #[serde(with = "units::seconds")]
    pub shutdown_retry_max: Duration,
    /// "": none.
    pub auto_join_room: String,
    pub rooms_from_query: bool,
    pub outbox_limit: usize,
    pub slow_consumer: SlowConsumer,
    #[serde(with = "units::seconds")]
    pub batch_window: Duration,
    pub adaptive_batching: bool,
}

impl Default for SseSection {
    fn default() -> Self {
        SseSection {
            prefix: "/sse".into(),
            keep_alive: Duration::from_secs(15),
            retry: Duration::ZERO,
            shutdown_retry_min: Duration::from_secs(1),
            shutdown_retry_max: Duration::from_secs(6),
            auto_join_room: ssehub::ROOM_ALL.into(),
            rooms_from_query: true,
            outbox_limit: 1024 * 1024,
            slow_consumer: SlowConsumer::Close,
            batch_window: Duration::from_millis(20),
            adaptive_batching: true,
        }
    }
}

/// Limits (0: none, where a limit can be off).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LimitsSection {
    /// TCP connections in all, whatever they carry.
    pub max_connections: usize,
    /// Connections slow to send their first request's head (half a head in their first
    /// read, or silent for a second), in all and per client address (IPv6 per /64): past
    /// either, such a connection is closed at once. Complete heads never count.
    pub max_pending_connections: usize,
    pub max_pending_per_ip: usize,
    /// Streams in all.
    pub max_streams: usize,
    /// Streams per client address (IPv6 per /64).
    pub max_streams_per_ip: usize,
    pub max_rooms_per_connection: usize,
    pub max_publish_body: usize,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    #[serde(with = "units::list")]
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_connections: 0,
            max_pending_connections: 1024,
            max_pending_per_ip: 128,
            max_streams: 0,
            max_streams_per_ip: 0,
            max_rooms_per_connection: 256,
            max_publish_body: 64 * 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Each room's history, for clients that reconnect with `Last-Event-ID`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HistorySection {
    pub enabled: bool,
    pub max_events: usize,
    pub max_bytes: usize,
    #[serde(with = "units::seconds")]
    pub max_age: Duration,
    /// All rooms' histories together, oldest first.
    pub total_bytes: usize,
    /// Keep the history on disk here, so that it survives a restart (a SIGTERM or a
    /// SIGKILL): clients resume after it with nothing missing. In memory without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// With `dir`: what a machine crash may take (a process crash takes nothing
    /// answered, in every mode).
    pub fsync: FsyncMode,
    /// With `fsync = "interval"`: seconds between syncs.
    #[serde(with = "units::seconds")]
    pub fsync_interval: Duration,
}

/// When a durable history's records reach the disk itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FsyncMode {
    /// Before each event is delivered or its publish answered.
    Always,
    /// Every `fsync_interval`, on a thread of its own.
    Interval,
    /// When the OS decides.
    Never,
}

impl HistorySection {
    /// `Fsync` as the library spells it.
    pub(crate) fn fsync(&self) -> ssehub::Fsync {
        match self.fsync {
            FsyncMode::Always => ssehub::Fsync::Always,
            FsyncMode::Interval => ssehub::Fsync::Interval(self.fsync_interval),
            FsyncMode::Never => ssehub::Fsync::Never,
        }
    }
}

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection {
            enabled: true,
            max_events: 1000,
            max_bytes: 1024 * 1024,
            max_age: Duration::from_secs(600),
            total_bytes: 64 * 1024 * 1024,
            dir: None,
            fsync: FsyncMode::Interval,
            fsync_interval: Duration::from_secs(1),
        }
    }
}

/// Several nodes sharing rooms and history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RedisSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub prefix: String,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: None,
            prefix: "ssehub".into(),
        }
    }
}

/// The demo's page and ticker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DemoSection {
    /// Serve the built-in page at `/`.
    pub page: bool,
    /// Seconds between `tick` events to `__all` (0: off).
    #[serde(with = "units::seconds")]
    pub tick_interval: Duration,
    /// Serve this folder at `/` instead of the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_dir: Option<PathBuf>,
}

impl Default for DemoSection {
    fn default() -> Self {
        DemoSection {
            page: true,
            tick_interval: Duration::from_secs(1),
            static_dir: None,
        }
    }
}

/// What an operator watches the hub with (all behind the operator's credential).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ObserveSection {
    /// Prometheus metrics ("": off).
    pub metrics_path: String,
    /// The live dashboard, its feed at PATH/events ("": off).
    pub dashboard_path: String,
    /// Rooms whose members get `ssehub.join` / `ssehub.leave` events.
    #[serde(with = "units::list")]
    pub presence: Vec<RoomSelector>,
    /// Presence events say how many came and went, not who (no ids, no subs).
    pub presence_counts_only: bool,
}

impl Default for ObserveSection {
    fn default() -> Self {
        ObserveSection {
            metrics_path: "/metrics".into(),
            dashboard_path: "/dashboard".into(),
            presence: Vec::new(),
            presence_counts_only: false,
        }
    }
}

/// Logging (`RUST_LOG`, when set, wins).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSection {
    /// A `tracing` filter: `info`, `warn`, `ssehub=debug,info`, ...
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
        }
    }
}

impl Config {
    /// The file at `path` (if any) with the environment's overrides, checked.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        Config::load_with(path, std::env::vars().collect())
    }

    /// [`Config::load`] with the variables `vars`.
    pub(crate) fn load_with(
        path: Option<&Path>,
        vars: Vec<(String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(p) => file_table(p)?,
            None => toml::Table::new(),
        };
        // The reference hub's variables are read only when the hub is on: its
        // `enabled` comes from the file or from SSEHUB_MERCURE_ENABLED, never from them.
        let mut probe = table.clone();
        env::apply(&mut probe, vars.iter().cloned())?;
        let enabled = probe
            .get("mercure")
            .and_then(|m| m.get("enabled"))
            .and_then(toml::Value::as_bool)
            .unwrap_or(false);
        let mut warnings = Vec::new();
        let mut origins = Vec::new();
        let mut https_server_name = None;
        if enabled {
            let compat = compat::read(&vars)?;
            for s in compat.settings {
                env::set_path(&mut table, s.path, s.value)?;
                let key = s.path.join(".");
                origins.retain(|(k, _): &(String, String)| *k != key);
                origins.push((key, s.origin));
            }
            warnings = compat.warnings;
            https_server_name = compat.https;
        } else {
            let set = compat::hub_variables_set(&vars);
            if !set.is_empty() {
                warnings.push(format!(
                    "{} set, but the Mercure hub is off: they are not read; set \
                     SSEHUB_MERCURE_ENABLED=true (or [mercure] enabled = true) to serve it \
                     at /.well-known/mercure",
                    set.join(", ")
                ));
            }
        }
        let from_env = env::apply(&mut table, vars.into_iter())?;
        origins.retain(|(k, _)| !from_env.contains(k));
        if from_env.iter().any(|k| k == "server.listen") {
            // SSEHUB_SERVER_LISTEN wins over SERVER_NAME, and its TLS wish goes with it.
            https_server_name = None;
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .context("the configuration")?;
        config.origins = origins;
        config.https_server_name = https_server_name;
        if config.mercure.enabled {
            warnings.extend(config.mercure.well_known_keys(&|k| config.named(k)));
        }
        config.warnings = warnings;
        Ok(config)
    }

    /// The Redis key prefix of the Mercure hub: the room hub's, then `:mercure`, so
    /// that the two hubs' sequences, histories and channels never mix.
    pub(crate) fn mercure_redis_prefix(&self) -> String {
        format!("{}:mercure", self.redis.prefix)
    }

    /// One line saying what the Mercure hub runs with, keys hidden.
    pub(crate) fn describe_mercure(&self) -> String {
        let prefix = self.redis.url.as_ref().map(|_| self.mercure_redis_prefix());
        let dir = self.mercure_history_dir();
        self.mercure.describe(prefix.as_deref(), dir.as_deref())
    }

    /// `key` (dotted), with the variable it was set from if it was one of the reference
    /// hub's: `mercure.publisher_jwt_key (from MERCURE_PUBLISHER_JWT_KEY)`.
    pub(crate) fn named(&self, key: &str) -> String {
        match self.origins.iter().find(|(k, _)| k == key) {
            Some((_, from)) => format!("{key} (from {from})"),
            None => key.to_owned(),
        }
    }

    /// Refuse values that parse but cannot work together, naming the key.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for s in &self.auth.allow_anonymous_subscribe {
            s.parse::<RoomSelector>()
                .with_context(|| format!("auth.allow_anonymous_subscribe = {s:?}"))?;
        }
        if let Some(alg) = &self.auth.jwt_algorithm {
            if alg.parse::<ssehub::JwtAlgorithm>().is_err() {
                bail!("auth.jwt_algorithm = {alg:?}: not a JWT algorithm (HS256, RS256, ES256, EdDSA, ...)");
            }
        }
        if self.auth.jwt_secret.is_some() && self.auth.jwt_public_key.is_some() {
            bail!("auth.jwt_secret and auth.jwt_public_key: give one key, not both");
        }
        if self.auth.jwt_secret.as_deref() == Some("") {
            bail!("auth.jwt_secret = \"\": an empty secret would accept forged tokens");
        }
        if self.auth.admin_token.as_deref() == Some("") {
            bail!("auth.admin_token = \"\": give a long random token, or leave the key out");
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bail!("tls.cert and tls.key: give both files, or neither");
        }
        if self.tls.self_signed && self.tls.cert.is_some() {
            bail!("tls.self_signed = true and tls.cert: choose one");
        }
        let any_host = self.server.allowed_hosts.iter().any(|h| h == "*");
        if any_host && self.server.allowed_hosts.len() > 1 {
            bail!("server.allowed_hosts: \"*\" stands alone");
        }
        let any = self.cors.allowed_origins.iter().any(|o| o == "*");
        if any && self.cors.allowed_origins.len() > 1 {
            bail!("cors.allowed_origins: \"*\" stands alone");
        }
        if any && self.cors.allow_credentials {
            bail!("cors.allow_credentials = true with allowed_origins = [\"*\"]: browsers refuse credentials for any origin; list the origins");
        }
        if self.sse.prefix.trim_matches('/').is_empty() {
            bail!(
                "sse.prefix = {:?}: the stream needs a path of its own",
                self.sse.prefix
            );
        }
        if self.history.max_events == 0 {
            bail!("history.max_events = 0: use history.enabled = false");
        }
        if self.sse.shutdown_retry_max < self.sse.shutdown_retry_min {
            bail!("sse.shutdown_retry_max is below sse.shutdown_retry_min");
        }
        for (key, h) in [
            ("history", &self.history),
            ("mercure.history", &self.mercure.history),
        ] {
            if h.dir.is_some() && self.redis.url.is_some() {
                bail!(
                    "{key}.dir with redis.url: the nodes keep their history in Redis; \
                     history.dir is for a hub of one node"
                );
            }
            if h.dir.is_some() && h.fsync == FsyncMode::Interval && h.fsync_interval.is_zero() {
                bail!("{key}.fsync_interval = 0: use {key}.fsync = \"always\"");
            }
        }
        if let Some(name) = &self.https_server_name {
            let has_certificate = self.tls.cert.is_some() || self.tls.self_signed;
            if !has_certificate && self.mercure.enabled {
                bail!(
                    "SERVER_NAME={name} asks for HTTPS (the reference hub's Caddy obtains a \
                     certificate for the name itself); ssehub obtains none: give [tls] cert \
                     and key (SSEHUB_TLS_CERT, SSEHUB_TLS_KEY; or SSEHUB_TLS_SELF_SIGNED=true \
                     for localhost), or serve plain HTTP behind your TLS proxy with \
                     SERVER_NAME=':80'"
                );
            }
        }
        self.validate_mercure()
    }

    /// `[mercure]`, when the hub is on: its keys read and usable, and a hub someone can
    /// use (a publisher key; a subscriber key unless subscribers may be anonymous).
    fn validate_mercure(&self) -> anyhow::Result<()> {
        let m = &self.mercure;
        if !m.enabled {
            return Ok(());
        }
        let named = |k: &str| self.named(k);
        if m.publisher_jwt_key.is_none() {
            bail!(
                "mercure.enabled = true needs mercure.publisher_jwt_key \
                 (MERCURE_PUBLISHER_JWT_KEY, or publisher_jwt in MERCURE_EXTRA_DIRECTIVES): \
                 without it no publisher is accepted"
            );
        }
        m.verifier(Role::Publisher, &named)?;
        if m.subscriber_jwt_key.is_none() && !m.anonymous {
            bail!(
                "mercure.enabled = true needs mercure.subscriber_jwt_key \
                 (MERCURE_SUBSCRIBER_JWT_KEY), or mercure.anonymous = true: else no \
                 subscriber is accepted"
            );
        }
        m.verifier(Role::Subscriber, &named)?;
        if m.cors_origins.iter().any(|o| o == "*") {
            bail!(
                "{} = [\"*\"]: the hub's CORS goes with credentials (the cookie), and any \
                 origin with credentials would let every web page read its visitors' private \
                 updates; list the origins (https://app.example)",
                named("mercure.cors_origins")
            );
        }
        if m.cookie_name.is_empty() || m.cookie_name.contains([';', '=', ' ', ',']) {
            bail!(
                "{} = {:?}: a cookie's name (no `;`, `=`, `,` or blanks)",
                named("mercure.cookie_name"),
                m.cookie_name
            );
        }
        for (key, n) in [
            ("mercure.max_topics", m.max_topics),
            ("mercure.max_selectors", m.max_selectors),
            ("mercure.max_body", m.max_body),
        ] {
            if n == 0 {
                bail!("{key} = 0: at least 1");
            }
        }
        if m.history.max_events == 0 {
            bail!(
                "{} = 0: use mercure.history.enabled = false",
                named("mercure.history.max_events")
            );
        }
        Ok(())
    }

    /// Where the Mercure hub keeps its history on disk: `[mercure.history] dir`, or a
    /// subdirectory `mercure` of `[history] dir` (each hub's log is its own).
    pub(crate) fn mercure_history_dir(&self) -> Option<PathBuf> {
        let m = &self.mercure.history;
        m.dir
            .clone()
            .or_else(|| self.history.dir.as_ref().map(|d| d.join("mercure")))
            .filter(|_| m.enabled)
    }

    /// The configuration as TOML, secrets hidden (what `check-config` prints).
    pub(crate) fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let hide = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("(hidden)".into());
            }
        };
        hide(&mut shown.auth.jwt_secret);
        hide(&mut shown.auth.admin_token);
        hide(&mut shown.auth.publish_token);
        hide(&mut shown.mercure.publisher_jwt_key);
        hide(&mut shown.mercure.subscriber_jwt_key);
        if let Some(url) = &shown.redis.url {
            shown.redis.url = Some(redact_url(url));
        }
        toml::to_string(&shown).expect("a config serializes")
    }
}

/// A file's top-level table; unreadable or not TOML is an error naming the file.
fn file_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    // Deserialized into `Config` from the text first: toml then names the line, the key
    // and why (an unknown key, a bad value), which a table no longer could. Its message
    // shows the line and the value: not when they may be a secret.
    if let Err(e) = toml::from_str::<Config>(&text) {
        let message = secrets::describe(&text, &e);
        return Err(anyhow::Error::msg(message)).with_context(|| format!("in {}", path.display()));
    }
    Ok(toml::from_str(&text).expect("parsed once already"))
}

/// A URL without its password, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
