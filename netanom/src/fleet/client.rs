//! Connecting to NATS as `[fleet]` says (servers, credentials, TLS), and the JetStream streams
//! the fleet uses, created by the first gateway that finds them missing.
use std::{sync::Arc, time::Duration};

use async_nats::{
    ConnectOptions, Event,
    jetstream::{
        self,
        stream::{self, DiscardPolicy, StorageType},
    },
};
use thiserror::Error;

use super::config::{FleetConfig, Subjects};
use crate::telemetry::fleet::FleetCounters;

/// How long a connection attempt waits for a server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Retention of the alerts stream.
const ALERTS_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
const ALERTS_MAX_BYTES: i64 = 1 << 30;
/// Window in which JetStream drops a message id it has already stored (retries).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What went wrong talking to NATS.
#[derive(Debug, Error)]
pub enum FleetError {
    #[error("cannot read the NATS credentials file {path}: {detail}; check fleet.creds_file")]
    Credentials { path: String, detail: String },
    #[error(
        "cannot connect to NATS at {servers}: {detail}. Check that nats-server runs there with JetStream \
         (-js), and fleet.servers, fleet.user / fleet.password or fleet.creds_file, fleet.tls_ca"
    )]
    Connect { servers: String, detail: String },
    #[error(
        "the JetStream stream {stream} cannot be used: {detail}. Check that the server runs with \
         JetStream (-js) and that this user may use $JS.API"
    )]
    Stream { stream: String, detail: String },
    #[error("publishing on {subject} failed: {detail}")]
    Publish { subject: String, detail: String },
}

/// The connection options for `cfg`, named `name`. With `counters`, the connection's state
/// and reconnects are counted and each change logged once.
pub async fn options(
    cfg: &FleetConfig,
    name: &str,
    counters: Option<Arc<FleetCounters>>,
) -> Result<ConnectOptions, FleetError> {
    let mut o = match &cfg.creds_file {
        Some(p) => ConnectOptions::with_credentials_file(p)
            .await
            .map_err(|e| FleetError::Credentials {
                path: p.display().to_string(),
                detail: e.to_string(),
            })?,
        None => ConnectOptions::new(),
    };
    if !cfg.user.is_empty() {
        o = o.user_and_password(cfg.user.clone(), cfg.password.clone());
    }
    if let Some(ca) = &cfg.tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if cfg.servers.iter().any(|s| s.is_tls()) {
        o = o.require_tls(true);
    }
    o = o
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        // Reconnects quickly at first, then every 2 s at most: a restarted server is found
        // within seconds.
        .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(2_000)))
        .max_reconnects(None);
    if let Some(c) = counters {
        o = o.event_callback(move |e| {
            let c = c.clone();
            async move { on_event(&c, e) }
        });
    }
    Ok(o)
}

fn on_event(c: &FleetCounters, e: Event) {
    use std::sync::atomic::Ordering;
    match e {
        Event::Connected => {
            let was = c.connected.swap(true, Ordering::Relaxed);
            if !was {
                FleetCounters::bump(&c.reconnects);
                log::info!("fleet: connected to NATS");
            }
            c.update(|s| {
                s.connection = "connected".into();
                s.error = None;
            });
        }
        Event::Disconnected => {
            if c.connected.swap(false, Ordering::Relaxed) {
                log::error!(
                    "fleet: disconnected from NATS; reconnecting. Local detection and blocking go on, \
                     and what this gateway decides waits in the outbound queue"
                );
            }
            c.update(|s| s.connection = "disconnected".into());
        }
        Event::ServerError(e) => log::warn!("fleet: NATS server error: {e}"),
        // While disconnected every attempt fails the same way: the disconnection was logged.
        Event::ClientError(e) if c.connected.load(Ordering::Relaxed) => {
            log::warn!("fleet: NATS client error: {e}")
        }
        _ => {}
    }
}

/// Connects (the client keeps trying in the background when `retry` is set, so an
/// unreachable server at start-up is not an error).
pub async fn connect(
    cfg: &FleetConfig,
    name: &str,
    counters: Option<Arc<FleetCounters>>,
    retry: bool,
) -> Result<async_nats::Client, FleetError> {
    let mut o = options(cfg, name, counters).await?;
    if retry {
        o = o.retry_on_initial_connect();
    }
    let servers: Vec<async_nats::ServerAddr> = cfg.servers.iter().map(|s| s.addr()).collect();
    o.connect(servers).await.map_err(|e| FleetError::Connect {
        servers: cfg
            .servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        detail: e.to_string(),
    })
}

/// The decisions stream (created when missing): every gateway's decisions, kept `max_age`
/// (the longest TTL a decision can have), replicated on up to three servers of a cluster.
pub async fn decision_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    max_age: Duration,
    clustered: bool,
) -> Result<stream::Stream, FleetError> {
    let cfg = stream::Config {
        name: subjects.decision_stream(),
        subjects: vec![subjects.all("decisions")],
        max_age,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    ensure(js, cfg, clustered).await
}

/// The alerts stream (created when missing): a week of every gateway's alerts, 1 GiB at most.
pub async fn alert_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    clustered: bool,
) -> Result<stream::Stream, FleetError> {
    let cfg = stream::Config {
        name: subjects.alert_stream(),
        subjects: vec![subjects.all("alerts")],
        max_age: ALERTS_MAX_AGE,
        max_bytes: ALERTS_MAX_BYTES,
        discard: DiscardPolicy::Old,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    ensure(js, cfg, clustered).await
}

/// Gets the stream, or creates it: with three replicas on a cluster (fewer only when the
/// cluster has fewer servers; a cluster still electing its leader refuses, and the caller
/// tries again).
async fn ensure(
    js: &jetstream::Context,
    cfg: stream::Config,
    clustered: bool,
) -> Result<stream::Stream, FleetError> {
    let name = cfg.name.clone();
    if let Ok(s) = js.get_stream(&name).await {
        return Ok(s);
    }
    let mut last = String::new();
    let tries: &[usize] = if clustered { &[3, 2, 1] } else { &[1] };
    for &replicas in tries {
        let c = stream::Config {
            num_replicas: replicas,
            ..cfg.clone()
        };
        match js.get_or_create_stream(c).await {
            Ok(s) => {
                log::info!(
                    "fleet: the JetStream stream {name} is in place ({replicas} replicas when this gateway created it)"
                );
                return Ok(s);
            }
            Err(e) => {
                last = e.to_string();
                log::info!("fleet: the JetStream stream {name} with {replicas} replicas: {last}");
                if !last.contains("insufficient resources") {
                    break;
                }
            }
        }
    }
    Err(FleetError::Stream {
        stream: name,
        detail: last,
    })
}

/// Whether the connected server is one of a cluster.
pub fn is_clustered(client: &async_nats::Client) -> bool {
    let info = client.server_info();
    log::debug!("fleet: server {} cluster {:?}", info.server_name, info.cluster);
    info.cluster.is_some()
}

/// How long a one-off publish (`netanom block add --fleet`) waits for JetStream's
/// acknowledgement.
const ONE_OFF_WAIT: Duration = Duration::from_secs(5);

/// Publishes one decision and waits for JetStream to store it (the command line's
/// `block add|del --fleet`): connects once, creates the decisions stream when missing.
pub fn publish_now(
    cfg: &FleetConfig,
    max_age: Duration,
    m: &super::message::DecisionMsg,
) -> Result<(), FleetError> {
    let subjects = cfg.subjects();
    let subject = subjects.decisions(&m.gateway);
    let fail = |detail: String| FleetError::Publish {
        subject: subject.clone(),
        detail,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    rt.block_on(async {
        let client = connect(cfg, &format!("netanom-cli {}", m.gateway), None, false).await?;
        let js = jetstream::new(client.clone());
        let clustered = is_clustered(&client);
        decision_stream(&js, &subjects, max_age, clustered).await?;
        let p = jetstream::message::PublishMessage::build()
            .payload(m.encode().into())
            .message_id(&m.id);
        let ack = js
            .send_publish(subject.clone(), p)
            .await
            .map_err(|e| fail(e.to_string()))?;
        match tokio::time::timeout(ONE_OFF_WAIT, ack.into_future()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(_) => Err(fail(format!(
                "no acknowledgement from JetStream within {} s",
                ONE_OFF_WAIT.as_secs()
            ))),
        }
    })
}

/// Follows the alerts stream: from its start with `all`, else from now. Hands each alert's
/// subject and payload to `each` until it returns false.
pub async fn follow_alerts(
    cfg: &FleetConfig,
    all: bool,
    mut each: impl FnMut(&str, &[u8]) -> bool,
) -> Result<(), FleetError> {
    use futures_util::StreamExt as _;
    let subjects = cfg.subjects();
    let client = connect(cfg, "netanom fleet tail", None, false).await?;
    let js = jetstream::new(client.clone());
    let clustered = is_clustered(&client);
    let stream = alert_stream(&js, &subjects, clustered).await?;
    let err = |e: String| FleetError::Stream {
        stream: subjects.alert_stream(),
        detail: e,
    };
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subjects.all("alerts"),
            deliver_policy: if all {
                jetstream::consumer::DeliverPolicy::All
            } else {
                jetstream::consumer::DeliverPolicy::New
            },
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut msgs = consumer.messages().await.map_err(|e| err(e.to_string()))?;
    while let Some(m) = msgs.next().await {
        let m = m.map_err(|e| err(e.to_string()))?;
        if !each(m.subject.as_str(), &m.payload) {
            break;
        }
    }
    Ok(())
}

/// Publishes `msgs` over one connection, acknowledgements awaited in batches of 256, and
/// returns when the first was sent (once connected) and each one's acknowledgement time from
/// then (the benchmark's baseline: the fleet path without the receiving gateways).
pub fn publish_all(
    cfg: &FleetConfig,
    max_age: Duration,
    msgs: &[super::message::DecisionMsg],
) -> Result<(std::time::Instant, Vec<Duration>), FleetError> {
    let subjects = cfg.subjects();
    let fail = |detail: String| FleetError::Publish {
        subject: subjects.all("decisions"),
        detail,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    rt.block_on(async {
        let client = connect(cfg, "netanom bench", None, false).await?;
        let js = jetstream::new(client.clone());
        let clustered = is_clustered(&client);
        decision_stream(&js, &subjects, max_age, clustered).await?;
        let t0 = std::time::Instant::now();
        let mut acked = Vec::with_capacity(msgs.len());
        for chunk in msgs.chunks(256) {
            let mut acks = Vec::with_capacity(chunk.len());
            for m in chunk {
                let p = jetstream::message::PublishMessage::build()
                    .payload(m.encode().into())
                    .message_id(&m.id);
                let ack = js
                    .send_publish(subjects.decisions(&m.gateway), p)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                acks.push(ack);
            }
            for ack in acks {
                match tokio::time::timeout(ONE_OFF_WAIT, ack.into_future()).await {
                    Ok(Ok(_)) => acked.push(t0.elapsed()),
                    Ok(Err(e)) => return Err(fail(e.to_string())),
                    Err(_) => return Err(fail("no acknowledgement within 5 s".into())),
                }
            }
        }
        Ok((t0, acked))
    })
}
