//! The S3 store, on `aws-sdk-s3`; works with AWS and with S3-compatible servers
//! (MinIO, Ceph, SeaweedFS...) through a custom endpoint and path-style addressing.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{ObjectMeta, ObjectStore, S3Options, StoreError, validate_key};
use crate::Location;

/// Objects in one bucket below a key prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    location: Location,
}

impl S3Store {
    /// A store over an existing client (tests use this to pass static credentials).
    pub fn new(client: Client, bucket: &str, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/').to_owned();
        let location = Location::S3 { bucket: bucket.to_owned(), prefix: prefix.clone() };
        Self { client, bucket: bucket.to_owned(), prefix, location }
    }

    /// A store whose client takes its credentials and region from the AWS chain.
    /// Nothing is sent until the first operation.
    pub async fn connect(bucket: &str, prefix: &str, options: &S3Options) -> Self {
        let region = RegionProviderChain::first_try(options.region.clone().map(aws_sdk_s3::config::Region::new))
            .or_default_provider()
            .or_else("us-east-1");
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await;
        let mut config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(options.path_style);
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self::new(Client::from_conf(config.build()), bucket, prefix)
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) }
    }

    /// Turns an SDK error into a [`StoreError`] that says which bucket and key failed.
    fn error<E>(&self, operation: &'static str, key: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let bucket = self.bucket.clone();
        let key = key.to_owned();
        match &err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().unwrap_or("").to_owned();
                let message = ctx.err().message().unwrap_or("").to_owned();
                match code.as_str() {
                    "NoSuchKey" => StoreError::NotFound { location: self.location.to_string(), key },
                    "NoSuchBucket" => StoreError::BucketNotFound { bucket },
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AccessDenied"
                    | "NotSignedUp"
                    | "ExpiredToken"
                    | "InvalidToken" => StoreError::AccessDenied { bucket, code, message },
                    "" if status == 404 => StoreError::NotFound { location: self.location.to_string(), key },
                    "" if status == 403 => StoreError::AccessDenied { bucket, code: "403".into(), message },
                    _ => StoreError::Service { operation, bucket, key, code, message },
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
                StoreError::Unreachable { operation, bucket, key, message: error_chain(&err) }
            }
            _ => StoreError::Service { operation, bucket, key, code: "Client".into(), message: error_chain(&err) },
        }
    }
}

/// The error and its sources on one line: the SDK's top-level message alone ("dispatch
/// failure") does not say that the connection was refused.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("GetObject", key, e))?;
        let body = out.body.collect().await.map_err(|e| StoreError::Unreachable {
            operation: "GetObject",
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: error_chain(&e),
        })?;
        Ok(body.into_bytes())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = if self.prefix.is_empty() { prefix.to_owned() } else { format!("{}/{prefix}", self.prefix) };
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full_prefix).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(ObjectMeta {
                    key: key[strip.min(key.len())..].to_owned(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", key, e))?;
        Ok(())
    }

    fn location(&self) -> &Location {
        &self.location
    }
}
