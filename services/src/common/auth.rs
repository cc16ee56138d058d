//! JWTs (HS256) issued by `authen` and verified by every service with the shared secret
//! (signature, expiry, issuer and audience), and the service credential that internal
//! routes require: a token derived from the same secret, sent by services to one another
//! in [`INTERNAL_HEADER`] and never forwarded by the gateway, so that a gateway bug alone
//! cannot reach an internal route.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::common::error::ApiError;

/// The secret used with `--dev` only; services refuse to start without a secret otherwise.
pub const DEV_SECRET: &str = "storefront-development-secret-do-not-use";

/// The `iss` of every token `authen` issues.
pub const ISSUER: &str = "storefront-authen";
/// The `aud` of every token: the storefront's services.
pub const AUDIENCE: &str = "storefront";
/// Shortest signing secret accepted: 256 bits, the size of HS256's key.
pub const MIN_SECRET_BYTES: usize = 32;
/// The header carrying the service credential on internal calls.
pub const INTERNAL_HEADER: &str = "x-storefront-internal";

/// How long a token lives.
pub const TOKEN_TTL: chrono::Duration = chrono::Duration::hours(12);

/// Signing and verifying keys.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    internal: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// A token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: i64,
    /// User name.
    pub name: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issuer: [`ISSUER`].
    pub iss: String,
    /// Audience: [`AUDIENCE`].
    pub aud: String,
}

/// A signing secret too short to be safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the JWT secret must be at least {MIN_SECRET_BYTES} bytes, not {0}")]
pub struct WeakSecret(pub usize);

impl Keys {
    /// Keys from a shared secret (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn new(secret: &str) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret(secret.len()));
        }
        // A separate value for service-to-service calls: knowing it does not let anyone
        // sign tokens, and a token does not open internal routes.
        let internal = hex::encode(Sha256::new_with_prefix(b"storefront-internal\0").chain_update(secret).finalize());
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            internal,
        })
    }

    /// Issues a token for a user.
    pub fn issue(&self, id: i64, name: &str) -> Result<String, ApiError> {
        let claims = Claims {
            sub: id,
            name: name.to_owned(),
            exp: (chrono::Utc::now() + TOKEN_TTL).timestamp(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// Verifies a token: signature, algorithm, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))
    }

    /// The service credential to send in [`INTERNAL_HEADER`].
    pub fn internal_token(&self) -> &str {
        &self.internal
    }

    fn is_internal(&self, presented: &[u8]) -> bool {
        bool::from(self.internal.as_bytes().ct_eq(presented))
    }
}

/// A caller of an internal route that presented the service credential; anyone else is
/// answered 404, as if the route did not exist.
#[derive(Debug, Clone, Copy)]
pub struct InternalCaller;

impl<S: Send + Sync> FromRequestParts<S> for InternalCaller
where
    Keys: FromRef<S>,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(INTERNAL_HEADER) {
            Some(v) if Keys::from_ref(state).is_internal(v.as_bytes()) => Ok(InternalCaller),
            _ => Err(ApiError::not_found(format!("no route {}", parts.uri.path()))),
        }
    }
}

/// The authenticated user of a request (`Authorization: Bearer <jwt>`).
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// User id.
    pub id: i64,
    /// User name.
    pub name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser
where
    Keys: FromRef<S>,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let claims = Keys::from_ref(state).verify(token.trim())?;
        Ok(AuthUser { id: claims.sub, name: claims.name })
    }
}
