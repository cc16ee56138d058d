//! An S3-compatible server on loopback, backed by a temporary folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Access key the server accepts.
pub const ACCESS_KEY: &str = "prescale-test";
/// Secret key the server accepts.
pub const SECRET_KEY: &str = "prescale-test-secret";

/// A running (or stopped) S3 server; dropping it stops it.
#[derive(Debug)]
pub struct S3Server {
    root: PathBuf,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
    put_delay_ms: Arc<AtomicU64>,
}

impl S3Server {
    /// Starts a server on a free loopback port, storing buckets as folders of `root`.
    pub async fn start(root: &Path) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut server = Self { root: root.to_owned(), addr, task: None, put_delay_ms: Arc::default() };
        server.serve(listener)?;
        Ok(server)
    }

    fn serve(&mut self, listener: TcpListener) -> std::io::Result<()> {
        let fs = s3s_fs::FileSystem::new(&self.root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut builder =
            S3ServiceBuilder::new(Faithful { fs, root: self.root.clone(), put_delay_ms: self.put_delay_ms.clone() });
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the accept loop drops the set and so
            // cuts every open connection, as a crashed server would.
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let service = service.clone();
                connections.spawn(async move {
                    let _ =
                        ConnBuilder::new(TokioExecutor::new()).serve_connection(TokioIo::new(socket), service).await;
                });
            }
        }));
        Ok(())
    }

    /// Makes every later PUT wait this long before it is stored: a slow store, so a test
    /// can crash a client in the middle of its writes.
    pub fn set_put_delay(&self, delay: Duration) {
        self.put_delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Creates a bucket (a folder of the root).
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(bucket))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving: the port refuses connections and open ones are cut.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same port, with the same data.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener)
    }

    /// A client for this server with the given credentials.
    pub fn client_with(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(access_key, secret_key, None, None, "prescale-testkit"))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// A client with the accepted credentials.
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_with(ACCESS_KEY, SECRET_KEY)
    }
}

/// `s3s_fs::FileSystem` with the one S3 behaviour it skips: writing to a bucket that does
/// not exist answers `NoSuchBucket` (s3s-fs would create the folder). Every operation
/// the project uses is delegated; the rest answer `NotImplemented`.
struct Faithful {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    put_delay_ms: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl S3 for Faithful {
    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        if !self.root.join(&req.input.bucket).is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        let delay = self.put_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.fs.put_object(req).await
    }
    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.fs.get_object(req).await
    }
    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fs.head_object(req).await
    }
    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        if !self.root.join(&req.input.bucket).is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        self.fs.delete_object(req).await
    }
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
