//! GoBGP's gRPC API (package `apipb`, GoBGP 3.10.0 as Debian 12 ships it), generated at build
//! time from the vendored proto files (`proto/`, with their licence and origin) as a tonic
//! client: [`apipb::gobgp_api_client::GobgpApiClient`].
//!
//! Path attributes and NLRIs travel as `google.protobuf.Any`; [`pack`] and [`unpack`] convert
//! them with their type URLs.

/// The generated messages and client (generated code: clippy's advice is for the generator).
#[allow(clippy::all)]
pub mod apipb {
    tonic::include_proto!("apipb");
}

pub use prost_types::Any;

/// The type URL of message `name` of package `apipb`, as GoBGP writes it.
pub fn type_url(name: &str) -> String {
    format!("type.googleapis.com/apipb.{name}")
}

/// `msg` packed into an `Any` under its GoBGP type name `name`.
pub fn pack<M: prost::Message>(name: &str, msg: &M) -> Any {
    Any {
        type_url: type_url(name),
        value: msg.encode_to_vec(),
    }
}

/// The message in `any` if it is of type `name`; `None` for another type or undecodable bytes.
pub fn unpack<M: prost::Message + Default>(any: &Any, name: &str) -> Option<M> {
    if any.type_url != type_url(name) {
        return None;
    }
    M::decode(any.value.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_round_trips_by_type_name() {
        let p = apipb::IpAddressPrefix {
            prefix_len: 32,
            prefix: "198.18.2.2".into(),
        };
        let a = pack("IPAddressPrefix", &p);
        assert_eq!(a.type_url, "type.googleapis.com/apipb.IPAddressPrefix");
        assert_eq!(unpack::<apipb::IpAddressPrefix>(&a, "IPAddressPrefix"), Some(p));
        assert_eq!(unpack::<apipb::IpAddressPrefix>(&a, "FlowSpecNLRI"), None);
    }
}
