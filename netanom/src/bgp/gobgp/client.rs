//! GoBGP's gRPC API as a [`Speaker`]: routes in its global RIB, originated by it (added over
//! the API) and of the forms netanom makes, are netanom's.
use std::{future::Future, net::IpAddr, net::SocketAddr, time::Duration};

use netanom_gobgp::apipb::{
    AddPathRequest, DeletePathRequest, Family, ListPathRequest, ListPeerRequest, Path, TableType,
    gobgp_api_client::GobgpApiClient,
};
use tonic::{Code, Status, transport::Channel};

use super::encode::{decode, encode, families};
use crate::bgp::{
    route::Route,
    speaker::{Held, Speaker, SpeakerError},
};

/// How long one call (a listing included) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A client of gobgpd's API. Connects lazily and reconnects by itself.
pub struct GoBgp {
    addr: String,
    client: GobgpApiClient<Channel>,
}

impl GoBgp {
    /// A client of the API at `addr`. Must be called inside a tokio runtime.
    pub fn new(addr: SocketAddr) -> GoBgp {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("a socket address is a valid URI authority")
            .connect_timeout(CONNECT_TIMEOUT);
        GoBgp {
            addr: addr.to_string(),
            client: GobgpApiClient::new(endpoint.connect_lazy()),
        }
    }

    fn error(&self, op: &'static str, s: Status) -> SpeakerError {
        let addr = self.addr.clone();
        match s.code() {
            Code::Unavailable => SpeakerError::Unreachable {
                addr,
                detail: status_text(&s),
            },
            Code::DeadlineExceeded => SpeakerError::Timeout {
                addr,
                op,
                secs: CALL_TIMEOUT.as_secs(),
            },
            _ => SpeakerError::Refused {
                addr,
                op,
                detail: status_text(&s),
            },
        }
    }

    /// Runs `call` within [`CALL_TIMEOUT`], naming `op` in the error. (A connection closed
    /// on it, by a server that is not gRPC say, is a refusal.)
    async fn bounded<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, SpeakerError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(r) => r.map_err(|s| self.error(op, s)),
            Err(_) => Err(SpeakerError::Timeout {
                addr: self.addr.clone(),
                op,
                secs: CALL_TIMEOUT.as_secs(),
            }),
        }
    }
}

/// The paths of `family` in gobgpd's global RIB.
async fn list_family(mut c: GobgpApiClient<Channel>, family: Family) -> Result<Vec<Path>, Status> {
    let req = ListPathRequest {
        table_type: TableType::Global as i32,
        family: Some(family),
        ..Default::default()
    };
    let mut stream = c.list_path(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await? {
        out.extend(r.destination.into_iter().flat_map(|d| d.paths));
    }
    Ok(out)
}

/// The status's message and its causes (a connection refused, say), or its code when it has
/// none.
fn status_text(s: &Status) -> String {
    let mut parts: Vec<String> = vec![s.message().trim().to_owned()];
    let mut cause = std::error::Error::source(s);
    while let Some(e) = cause {
        let t = e.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cause = e.source();
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        format!("{:?}", s.code())
    } else {
        parts.join(": ")
    }
}

/// Whether gobgpd originated `p` itself (added over the API), rather than learned it from a
/// peer: it has no peer address.
fn originated(p: &Path) -> bool {
    !p.is_from_external
        && (p.neighbor_ip.is_empty()
            || p.neighbor_ip == "<nil>"
            || p.neighbor_ip.parse::<IpAddr>().is_ok_and(|a| a.is_unspecified()))
}

impl Speaker for GoBgp {
    type Path = Path;

    async fn held(&mut self) -> Result<Vec<Held<Path>>, SpeakerError> {
        let mut out = Vec::new();
        for family in families() {
            let listing = list_family(self.client.clone(), family);
            let paths = self.bounded("list its routes", listing).await?;
            out.extend(
                paths
                    .into_iter()
                    .filter(|p| originated(p) && !p.is_withdraw)
                    .filter_map(|p| decode(&p).map(|route| Held { route, path: p })),
            );
        }
        Ok(out)
    }

    async fn add(&mut self, r: &Route) -> Result<(), SpeakerError> {
        let req = AddPathRequest {
            table_type: TableType::Global as i32,
            path: Some(encode(r)),
            ..Default::default()
        };
        let mut c = self.client.clone();
        self.bounded("add a route", c.add_path(req)).await.map(drop)
    }

    async fn withdraw(&mut self, h: &Held<Path>) -> Result<(), SpeakerError> {
        let req = DeletePathRequest {
            table_type: TableType::Global as i32,
            family: h.path.family,
            path: Some(h.path.clone()),
            ..Default::default()
        };
        let mut c = self.client.clone();
        self.bounded("withdraw a route", c.delete_path(req))
            .await
            .map(drop)
    }

    async fn peers(&mut self) -> Result<Vec<IpAddr>, SpeakerError> {
        let mut c = self.client.clone();
        let call = async move {
            let mut stream = c.list_peer(ListPeerRequest::default()).await?.into_inner();
            let mut out = Vec::new();
            while let Some(r) = stream.message().await? {
                let conf = r.peer.and_then(|p| p.conf);
                out.extend(conf.and_then(|c| c.neighbor_address.parse::<IpAddr>().ok()));
            }
            Ok(out)
        };
        self.bounded("list its peers", call).await
    }
}
