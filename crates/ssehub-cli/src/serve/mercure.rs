//! The Mercure hub of `[mercure]` (`config/mercure.rs`), at `/.well-known/mercure`
//! beside the room hub: a hub of its own (its topics are not rooms), in this process or
//! shared with the other nodes on `[redis]`'s Redis under a prefix of its own.

use anyhow::Context;
use ssehub::{HistoryConfig, Mercure, MercureConfig, RedisConfig};

use crate::config::{redact_url, Config, Role};

/// The hub, if `[mercure]` turns it on.
pub(super) async fn mercure(c: &Config) -> anyhow::Result<Option<Mercure>> {
    let m = &c.mercure;
    if !m.enabled {
        return Ok(None);
    }
    let named = |k: &str| c.named(k);
    let mut config = MercureConfig::new()
        .anonymous(m.anonymous)
        .cors_origins(m.cors_origins.iter().cloned())
        .publish_origins(m.publish_origins.iter().cloned())
        .cookie_name(m.cookie_name.as_str())
        .heartbeat((!m.heartbeat.is_zero()).then_some(m.heartbeat))
        .max_topics(m.max_topics)
        .max_selectors(m.max_selectors)
        .max_body(m.max_body)
        .history(m.history.enabled.then(|| {
            HistoryConfig::default()
                .max_events(m.history.max_events)
                .max_bytes(m.history.max_bytes)
                .max_age(m.history.max_age)
        }))
        .history_total_bytes(m.history.total_bytes)
        .subscriptions(m.subscriptions);
    if let Some(resource) = &m.resource {
        config = config.resource(resource.as_str());
    }
    if let Some(url) = &m.hub_url {
        config = config
            .hub_url(url)
            .map_err(|e| anyhow::anyhow!("{}: {e}", named("mercure.hub_url")))?;
    }
    for issuer in &m.issuers {
        config = config.trusted_issuer(issuer.as_str());
    }
    for (name, key) in m.issuer_verifiers()? {
        config = config.issuer_key(name, key);
    }
    if let Some((key, _)) = m.verifier(Role::Publisher, &named)? {
        config = config.publisher_key(key);
    }
    if let Some((key, _)) = m.verifier(Role::Subscriber, &named)? {
        config = config.subscriber_key(key);
    }
    let hub = match &c.redis.url {
        None => {
            if let Some(dir) = c.mercure_history_dir() {
                config = config.history_dir(dir, m.history.fsync());
            }
            Mercure::open(config).context("[mercure]")?
        }
        Some(url) => {
            let prefix = c.mercure_redis_prefix();
            let redis = RedisConfig::new(url.as_str()).prefix(prefix.as_str());
            Mercure::with_redis(config, redis)
                .await
                .map_err(|e| anyhow::anyhow!("[mercure] on Redis {}: {e}", redact_url(url)))?
        }
    };
    Ok(Some(hub))
}
