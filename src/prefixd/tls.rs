//! TLS with `PREFIXD_CA_FILE`, as `curl --cacert` takes it: the CAs in the file are the only
//! roots, and a server certificate that is itself in the file is trusted as that server's
//! certificate — the usual self-signed `openssl req -x509` one, which OpenSSL 3 marks CA:TRUE
//! and webpki would refuse as "a CA used as an end entity". Its host name and validity dates
//! are still checked, and the handshake signature still proves the server holds its key;
//! nothing else loosens. Without `PREFIXD_CA_FILE`, ureq's own connector and the bundled
//! Mozilla roots are used unchanged.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, StreamOwned,
};
use std::io::{Read, Write};
use std::sync::Arc;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// The rustls configuration for a `PREFIXD_CA_FILE` holding `certs`.
pub fn config(certs: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err("no certificate in it can serve as a CA".into());
    }
    let verifier = Arc::new(Verifier {
        roots,
        listed: certs.to_vec(),
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What rustls' WebPkiServerVerifier checks (chain to a root, then the name), through the
/// same public functions, minus revocation lists we never have; then the listed exception.
#[derive(Debug)]
struct Verifier {
    roots: rustls::RootCertStore,
    /// The certificates of PREFIXD_CA_FILE, as given.
    listed: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        // No stapled OCSP response is required, as with rustls' own verifier by default.
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let algs = self.provider.signature_verification_algorithms.all;
        let refused = match verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            algs,
        ) {
            Ok(()) => match verify_server_name(&cert, server_name) {
                Ok(()) => return Ok(ServerCertVerified::assertion()),
                Err(e) => e,
            },
            Err(e) => e,
        };
        let dates = validity(end_entity.as_ref());
        if !self
            .listed
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            // Refused as webpki says; a date refusal with its dates, for the operator to read.
            let dated = match &refused {
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::NotValidYet,
                ) => dates.and_then(|d| outside_validity(now, d)),
                _ => None,
            };
            return Err(dated.unwrap_or(refused));
        }
        // Listed by the operator: trusted as this server's certificate, if it is for this
        // name and valid now.
        verify_server_name(&cert, server_name)?;
        let dates = dates.ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if let Some(e) = outside_validity(now, dates) {
            return Err(e);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The refusal, with its dates, when `now` is outside `(notBefore, notAfter)`.
fn outside_validity(now: UnixTime, (not_before, not_after): (u64, u64)) -> Option<rustls::Error> {
    let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    let t = now.as_secs();
    let e = if t < not_before {
        CertificateError::NotValidYetContext {
            time: now,
            not_before: at(not_before),
        }
    } else if t > not_after {
        CertificateError::ExpiredContext {
            time: now,
            not_after: at(not_after),
        }
    } else {
        return None;
    };
    Some(rustls::Error::InvalidCertificate(e))
}

/// `notBefore` and `notAfter` of an X.509 certificate (DER), as Unix seconds.
pub fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (cert, _) = tlv(der, 0x30)?;
    let (tbs, _) = tlv(cert, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest, 0xa0)?.1; // version
    }
    for tag in [0x02, 0x30, 0x30] {
        rest = tlv(rest, tag)?.1; // serial, signature algorithm, issuer
    }
    let (validity, _) = tlv(rest, 0x30)?;
    let (not_before, after) = time(validity)?;
    let (not_after, _) = time(after)?;
    Some((not_before, not_after))
}

/// One DER element with `tag`: its contents and what follows it.
fn tlv(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *b.first()? != tag {
        return None;
    }
    let (len, head) = match *b.get(1)? {
        n if n < 0x80 => (usize::from(n), 2),
        n @ 0x81..=0x84 => {
            let k = usize::from(n & 0x7f);
            let len = b
                .get(2..2 + k)?
                .iter()
                .fold(0usize, |a, x| a << 8 | usize::from(*x));
            (len, 2 + k)
        }
        _ => return None,
    };
    let end = head.checked_add(len)?;
    Some((b.get(head..end)?, b.get(end..)?))
}

/// A UTCTime or GeneralizedTime (always UTC, `Z`, in certificates) as Unix seconds, and the rest.
fn time(b: &[u8]) -> Option<(u64, &[u8])> {
    let (text, rest, year) = match b.first()? {
        0x17 => {
            let (t, rest) = tlv(b, 0x17)?;
            let yy: u32 = std::str::from_utf8(t.get(..2)?).ok()?.parse().ok()?;
            (
                t.get(2..)?,
                rest,
                if yy < 50 { 2000 + yy } else { 1900 + yy },
            )
        }
        0x18 => {
            let (t, rest) = tlv(b, 0x18)?;
            let yyyy = std::str::from_utf8(t.get(..4)?).ok()?.parse().ok()?;
            (t.get(4..)?, rest, yyyy)
        }
        _ => return None,
    };
    let t = std::str::from_utf8(text).ok()?;
    let (mo, d, h, mi, s) = (
        t.get(..2)?,
        t.get(2..4)?,
        t.get(4..6)?,
        t.get(6..8)?,
        t.get(8..10)?,
    );
    if t.get(10..)? != "Z" {
        return None;
    }
    let ms = crate::time::parse_rfc3339_ms(&format!("{year:04}-{mo}-{d}T{h}:{mi}:{s}Z"))?;
    Some((u64::try_from(ms / 1000).ok()?, rest))
}

/// TLS over the chained transport with our configuration, for https:// URLs (what ureq's
/// own rustls connector does, with our verifier).
#[derive(Debug)]
pub struct CaFileConnector(pub Arc<ClientConfig>);

impl<In: Transport> Connector<In> for CaFileConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Err(ureq::Error::ConnectionFailed);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host)
            .map_err(|_| ureq::Error::Tls("not a valid TLS server name"))?
            .to_owned();
        let mut conn = ClientConnection::new(self.0.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// A TLS failure in words an operator can act on: which certificate, which name, which date,
/// which roots (`ca_file`: PREFIXD_CA_FILE, or None for the bundled Mozilla roots).
pub fn words(e: &rustls::Error, host: &str, ca_file: Option<&std::path::Path>) -> String {
    use rustls::CertificateError as C;
    let date = |t: &rustls::pki_types::UnixTime| crate::time::rfc3339_from_unix(t.as_secs());
    let roots = match ca_file {
        Some(p) => format!("any CA in PREFIXD_CA_FILE ({})", p.display()),
        None => "any of the bundled Mozilla roots (set PREFIXD_CA_FILE to your CA)".into(),
    };
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!("prefixd's certificate is not signed by {roots}"),
            C::NotValidForNameContext { presented, .. } => {
                // rustls gives them as `DnsName("…")`, `IpAddress(…)`: the names alone.
                let names: Vec<&str> = presented
                    .iter()
                    .map(|p| match p.split_once('(') {
                        Some((_, inner)) => inner.trim_end_matches(')').trim_matches('"'),
                        None => p.as_str(),
                    })
                    .collect();
                format!(
                    "prefixd's certificate is for {}, not {host}",
                    names.join(", ")
                )
            }
            C::NotValidForName => format!("prefixd's certificate is not for {host}"),
            C::ExpiredContext { not_after, .. } => {
                format!("prefixd's certificate expired on {}", date(not_after))
            }
            C::Expired => "prefixd's certificate has expired".into(),
            C::NotValidYetContext { not_before, .. } => format!(
                "prefixd's certificate is not valid before {}",
                date(not_before)
            ),
            C::NotValidYet => "prefixd's certificate is not valid yet".into(),
            // A self-signed CA:TRUE certificate (OpenSSL 3's default) that is not listed.
            // webpki's own Display names its variant, also in appliance builds, whose
            // derived Debug output is shallow (rustls' Display of Other goes through it).
            C::Other(o) if o.0.to_string().contains("CaUsedAsEndEntity") => format!(
                "prefixd's certificate is not signed by {roots} (a self-signed certificate is trusted when that very certificate is in PREFIXD_CA_FILE)"
            ),
            other => format!("prefixd's certificate was refused ({other})"),
        },
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "prefixd speaks plain HTTP on this port (use http://)".into()
        }
        other => other.to_string(),
    }
}

/// The rustls error behind a ureq error: handed over as it is, or inside an I/O error (a
/// handshake run through `complete_io`).
pub fn rustls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_validity_of_the_test_certificates() {
        let pem =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/server.pem")).unwrap();
        let der = ureq::tls::parse_pem(&pem)
            .find_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.der().to_vec()),
                _ => None,
            })
            .unwrap();
        let (nb, na) = validity(&der).expect("validity");
        assert!(nb < na && nb > 1_600_000_000, "{nb} {na}");
        assert_eq!(validity(&der[..40]), None);
        assert_eq!(validity(b"\x30\x84\xff\xff\xff\xff"), None);
    }
}
