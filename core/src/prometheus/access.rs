//! How to reach a Prometheus-compatible backend that wants more than a URL: Thanos,
//! Mimir and Cortex behind a gateway, or Prometheus with `--web.config.file`.
//!
//! - A bearer token read from a file (a projected service-account token or a mounted
//!   Secret) and **re-read when the file changes**, so a rotated token is used without a
//!   restart; or basic auth with the password in a file, re-read likewise.
//! - TLS: the server checked against a CA file (or the system's roots), and a client
//!   certificate for mutual TLS. rustls with the `ring` provider, as the gRPC server.
//! - Extra headers on every request, such as `X-Scope-OrgID` for a tenant.
//!
//! Everything is checked at start (files readable, certificate and key parse, header
//! names and values valid), so a mistake exits with status 64 naming the field.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::source::PrometheusConfig;
use crate::config::FieldError;

/// Basic auth: a user name and a file holding the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// A file whose content (trailing newline ignored) is the password.
    pub password_file: PathBuf,
}

/// `[prometheus.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificates of the CAs that sign the server's certificate; without it, the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain), for mutual TLS; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub key_file: Option<PathBuf>,
}

/// Turns a secret file's content into the `Authorization` header value.
type MakeHeader = Box<dyn Fn(&str) -> String + Send + Sync>;

/// A file holding a secret, re-read when its modification time or size changes.
struct SecretFile {
    field: &'static str,
    path: PathBuf,
    /// The header value made from the content, and the (mtime, size) it was read at.
    cached: Mutex<(Option<(SystemTime, u64)>, HeaderValue)>,
    make: MakeHeader,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile").field("field", &self.field).field("path", &self.path).finish_non_exhaustive()
    }
}

impl SecretFile {
    fn open(field: &'static str, path: &Path, make: MakeHeader) -> Result<Self, FieldError> {
        let file =
            Self { field, path: path.to_owned(), cached: Mutex::new((None, HeaderValue::from_static(""))), make };
        file.current()?;
        Ok(file)
    }

    /// The header value for the file's current content.
    fn current(&self) -> Result<HeaderValue, FieldError> {
        let err = |e: &dyn std::fmt::Display| FieldError::new(self.field, format!("{}: {e}", self.path.display()));
        let meta = std::fs::metadata(&self.path).map_err(|e| err(&e))?;
        let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.0 != Some(stamp) {
            let text = std::fs::read_to_string(&self.path).map_err(|e| err(&e))?;
            let secret = text.trim_end_matches(['\n', '\r']);
            if secret.is_empty() {
                return Err(err(&"the file is empty"));
            }
            let mut value =
                HeaderValue::from_str(&(self.make)(secret)).map_err(|_| err(&"not a valid header value"))?;
            value.set_sensitive(true);
            *cached = (Some(stamp), value);
        }
        Ok(cached.1.clone())
    }
}

/// The checked access settings, ready to apply to requests.
#[derive(Debug, Clone, Default)]
pub struct Access {
    authorization: Option<Arc<SecretFile>>,
}

impl Access {
    /// Checks `config` and builds the HTTP client for `url` with its TLS settings and
    /// extra headers; `timeout` bounds each request.
    pub fn build(config: &PrometheusConfig) -> Result<(Self, reqwest::Client), FieldError> {
        let (url, timeout) = (&config.url, config.timeout);
        let authorization = match (&config.bearer_token_file, &config.basic_auth) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "prometheus.basic_auth",
                    "set either bearer_token_file or basic_auth, not both",
                ));
            }
            (Some(path), None) => Some(SecretFile::open(
                "prometheus.bearer_token_file",
                path,
                Box::new(|token| format!("Bearer {token}")),
            )?),
            (None, Some(basic)) => {
                if basic.username.is_empty() || basic.username.contains(':') {
                    return Err(FieldError::new("prometheus.basic_auth.username", "must be non-empty, without ':'"));
                }
                let user = basic.username.clone();
                Some(SecretFile::open(
                    "prometheus.basic_auth.password_file",
                    &basic.password_file,
                    Box::new(move |password| {
                        use base64::Engine as _;
                        format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                        )
                    }),
                )?)
            }
            (None, None) => None,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let field = format!("prometheus.headers.{name}");
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| FieldError::new(&field, "not a header name"))?;
            if name == AUTHORIZATION {
                return Err(FieldError::new(field, "use bearer_token_file or basic_auth for Authorization"));
            }
            let value =
                HeaderValue::from_str(value).map_err(|_| FieldError::new(&field, "not a valid header value"))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .default_headers(headers);
        let https = url.trim_start().to_ascii_lowercase().starts_with("https://");
        let tls = &config.tls;
        if !https && (tls.ca_file.is_some() || tls.cert_file.is_some()) {
            return Err(FieldError::new("prometheus.tls", "TLS settings need an https:// url"));
        }
        if https {
            builder = builder.tls_backend_preconfigured(client_tls(tls)?);
        }
        let client =
            builder.build().map_err(|e| FieldError::new("prometheus", format!("building the HTTP client: {e}")))?;
        Ok((Self { authorization: authorization.map(Arc::new) }, client))
    }

    /// The `Authorization` header for the next request, from the secret file's current
    /// content; `None` without authentication. A file that has become unreadable keeps
    /// the last good value (and says so), so a rotation in progress does not stop work.
    pub fn authorization(&self) -> Option<HeaderValue> {
        let file = self.authorization.as_ref()?;
        match file.current() {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the Prometheus credentials; using the last ones read");
                Some(file.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone())
            }
        }
    }
}

/// The rustls client settings: the CA file's certificates (or the system's roots) and
/// the client certificate, with the `ring` provider.
fn client_tls(tls: &TlsConfig) -> Result<rustls::ClientConfig, FieldError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = pem_certs("prometheus.tls.ca_file", path)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(FieldError::new(
                    "prometheus.tls.ca_file",
                    format!("{}: no usable CA certificate", path.display()),
                ));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FieldError::new("prometheus.tls", e))?
        .with_root_certificates(roots);
    match (&tls.cert_file, &tls.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = pem_certs("prometheus.tls.cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| FieldError::new("prometheus.tls.key_file", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| FieldError::new("prometheus.tls.cert_file", format!("the certificate and key: {e}")))
        }
        (Some(_), None) => Err(FieldError::new("prometheus.tls.key_file", "cert_file needs key_file")),
        (None, Some(_)) => Err(FieldError::new("prometheus.tls.cert_file", "key_file needs cert_file")),
    }
}

fn pem_certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, FieldError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| FieldError::new(field, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(FieldError::new(field, format!("{}: no PEM certificate", path.display())));
    }
    Ok(certs)
}
