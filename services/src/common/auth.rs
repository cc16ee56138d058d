//! JWTs (HS256) issued by `authen` and verified by every service with the shared secret.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::common::error::ApiError;

/// The secret used with `--dev` only; services refuse to start without a secret otherwise.
pub const DEV_SECRET: &str = "storefront-development-secret-do-not-use";

/// How long a token lives.
pub const TOKEN_TTL: chrono::Duration = chrono::Duration::hours(12);

/// Signing and verifying keys.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
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
}

/// A signing secret too short to be safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the JWT secret must be at least 16 bytes")]
pub struct WeakSecret;

impl Keys {
    /// Keys from a shared secret (at least 16 bytes).
    pub fn new(secret: &str) -> Result<Self, WeakSecret> {
        if secret.len() < 16 {
            return Err(WeakSecret);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        })
    }

    /// Issues a token for a user.
    pub fn issue(&self, id: i64, name: &str) -> Result<String, ApiError> {
        let claims = Claims { sub: id, name: name.to_owned(), exp: (chrono::Utc::now() + TOKEN_TTL).timestamp() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// Verifies a token: signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &Validation::new(Algorithm::HS256))
            .map(|d| d.claims)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))
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
