//! The back end over real TLS on loopback: a Nextcloud whose certificate
//! comes from the administrator's own CA is refused with a TLS error until
//! that CA is given with `ca-file`, and accepted then.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xcauth::backend::jsxc::JsxcBackend;
use xcauth::backend::{Backend, BackendError, BackendOptions, Cause, HttpClient, Verdict};
use xcauth::secret::Secret;

/// A one-CA PKI: the CA's PEM, and a server config for `localhost` signed
/// by it.
fn own_ca() -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "xcauth test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![server_cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    )
    .expect("server config");
    (ca_cert.pem(), config)
}

/// Serves HTTPS on a loopback port, answering every request with a
/// successful auth; returns the port.
async fn https_server(config: rustls::ServerConfig) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // Read until the end of the (small) request body.
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let body = r#"{"result":"success","data":{"uid":"alice"}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn jsxc(client: &Arc<HttpClient>, port: u16) -> JsxcBackend {
    let url = format!("https://localhost:{port}/index.php/apps/ojsxc/ajax/externalApi.php");
    JsxcBackend::new(
        Arc::clone(client),
        url,
        Secret::new("s"),
        "example.org".into(),
    )
}

#[tokio::test]
async fn own_ca_is_refused_without_ca_file_and_trusted_with_it() {
    let (ca_pem, config) = own_ca();
    let port = https_server(config).await;
    let password = Secret::new("pw");
    let options = BackendOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ca_file: None,
    };

    let without = HttpClient::new(&options).expect("backend");
    match jsxc(&without, port).auth("alice", &password).await {
        Err(BackendError::Misconfigured(Cause::Tls(_))) => {}
        other => panic!("an unknown CA must be a TLS error, got {other:?}"),
    }

    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("my-ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    let with = HttpClient::new(&BackendOptions {
        ca_file: Some(ca_file),
        ..options
    })
    .expect("backend with CA");
    assert_eq!(
        jsxc(&with, port).auth("alice", &password).await,
        Ok(Verdict::Accepted)
    );
}
