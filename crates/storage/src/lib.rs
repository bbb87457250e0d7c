//! Object storage for datasets and shard results: `s3://`, `gs://`,
//! `az://` and `file://` URLs, listed, read and (for shard results)
//! written through Apache Arrow's `object_store` crate.
//!
//! [`Storage`] lists the objects under a URL prefix and fetches one
//! object's bytes, from synchronous code: it owns a small tokio runtime,
//! caches one client per bucket, lets at most `concurrency` fetches run at
//! once (the rest wait for a permit), and stops reading a body past the
//! caller's byte cap. Retries are `object_store`'s, bounded by
//! [`StorageOptions::retries`] per request (default 10) and
//! [`StorageOptions::retry_timeout`] (default 3 minutes), with exponential
//! backoff, on connection errors, 5xx and 429 answers.
//!
//! This crate reads no environment variables: the caller passes the
//! credentials and endpoint as `object_store` configuration keys
//! (`aws_access_key_id`, `aws_endpoint`, `aws_allow_http`,
//! `google_service_account`, `azure_storage_account_name`, ...), which is
//! what the `zoo` CLI builds from the standard `AWS_*`, `GOOGLE_*` and
//! `AZURE_*` variables.
//!
//! ```no_run
//! let storage = zoo_storage::Storage::new(zoo_storage::StorageOptions::default()).unwrap();
//! let urls = storage.list("s3://bucket/pictures", |key| key.ends_with(".jpg")).unwrap();
//! let bytes = storage.fetch(&urls[0], 1 << 30).unwrap();
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, RetryConfig};
use tokio::sync::Semaphore;
use url::Url;

/// The URL schemes [`Storage`] reads.
pub const SCHEMES: &[&str] = &["s3", "gs", "az", "file"];

/// Whether `text` is a URL for [`Storage`] (one of [`SCHEMES`]).
pub fn is_object_url(text: &str) -> bool {
    text.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme))
}

/// Why listing or reading objects failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Not a URL this crate reads.
    #[error(
        "`{url}` is not an object-store URL ({reason}): use s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path"
    )]
    Url {
        /// The text given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The store refused or failed (after its retries).
    #[error("object store request for `{url}` failed")]
    Store {
        /// The URL.
        url: String,
        /// The store's error (it says how the retries went).
        #[source]
        source: object_store::Error,
    },
    /// An object is larger than the caller allows.
    #[error("`{url}` is larger than {max_bytes} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        max_bytes: u64,
    },
    /// The runtime could not start.
    #[error("starting the object-store runtime failed")]
    Runtime(#[source] std::io::Error),
}

impl StorageError {
    /// Whether the store said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}

/// How [`Storage`] reaches its stores.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// `object_store` configuration keys and values (credentials,
    /// endpoints, `aws_allow_http`), given to every client built.
    pub config: Vec<(String, String)>,
    /// Fetches running at once, at least 1.
    pub concurrency: usize,
    /// Retries of one request after the first attempt.
    pub retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            config: Vec::new(),
            concurrency: 16,
            retries: 10,
            retry_timeout: Duration::from_secs(180),
        }
    }
}

/// Lists and reads objects; see the crate docs.
#[derive(Debug)]
pub struct Storage {
    runtime: tokio::runtime::Runtime,
    config: Vec<(String, String)>,
    retry: RetryConfig,
    permits: Arc<Semaphore>,
    /// One client per `scheme://bucket`.
    clients: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Storage {
    /// A storage reader with `options`.
    pub fn new(options: StorageOptions) -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("zoo-storage")
            .enable_all()
            .build()
            .map_err(StorageError::Runtime)?;
        Ok(Self {
            runtime,
            config: options.config,
            retry: RetryConfig {
                max_retries: options.retries,
                retry_timeout: options.retry_timeout,
                ..RetryConfig::default()
            },
            permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The client for `url`'s bucket and the object path in it.
    fn locate(&self, url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath), StorageError> {
        let error = |reason: String| StorageError::Url {
            url: url.to_owned(),
            reason,
        };
        if !is_object_url(url) {
            return Err(error("unknown scheme".to_owned()));
        }
        let parsed = Url::parse(url).map_err(|source| error(source.to_string()))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(error("queries and fragments are not allowed".to_owned()));
        }
        let bucket = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (scheme, path) =
            ObjectStoreScheme::parse(&parsed).map_err(|source| error(source.to_string()))?;
        let path = ObjectPath::parse(path).map_err(|source| error(source.to_string()))?;
        if let Some(client) = clients.get(&bucket) {
            return Ok((Arc::clone(client), path));
        }
        // Building a client may start the runtime's timers.
        let _guard = self.runtime.enter();
        let client = self
            .build(scheme, &parsed)
            .map_err(|source| StorageError::Store {
                url: url.to_owned(),
                source,
            })?;
        clients.insert(bucket, Arc::clone(&client));
        Ok((client, path))
    }

    /// A client for `url`'s bucket with the configuration keys and retries.
    fn build(
        &self,
        scheme: ObjectStoreScheme,
        url: &Url,
    ) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        macro_rules! configured {
            ($builder:ty) => {{
                let builder = self.config.iter().fold(
                    <$builder>::new()
                        .with_url(url.to_string())
                        .with_retry(self.retry.clone()),
                    |builder, (key, value)| match key.parse() {
                        Ok(key) => builder.with_config(key, value.clone()),
                        Err(_) => builder,
                    },
                );
                Arc::new(builder.build()?) as Arc<dyn ObjectStore>
            }};
        }
        Ok(match scheme {
            ObjectStoreScheme::Local => Arc::new(object_store::local::LocalFileSystem::new()),
            ObjectStoreScheme::AmazonS3 => configured!(object_store::aws::AmazonS3Builder),
            ObjectStoreScheme::GoogleCloudStorage => {
                configured!(object_store::gcp::GoogleCloudStorageBuilder)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                configured!(object_store::azure::MicrosoftAzureBuilder)
            }
            _ => {
                return Err(object_store::Error::NotSupported {
                    source: format!("`{}://` URLs", url.scheme()).into(),
                });
            }
        })
    }

    /// The URLs of the objects under `prefix` (recursively) whose key
    /// passes `keep`, sorted.
    pub fn list(
        &self,
        prefix: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StorageError> {
        let (client, path) = self.locate(prefix)?;
        let base = prefix.trim_end_matches('/');
        let root = path.as_ref().to_owned();
        let store_error = |source| StorageError::Store {
            url: prefix.to_owned(),
            source,
        };
        let listing = self.runtime.block_on(async {
            let prefix = (!root.is_empty()).then_some(&path);
            client.list(prefix).try_collect::<Vec<_>>().await
        });
        let mut urls: Vec<String> = listing
            .map_err(store_error)?
            .into_iter()
            .filter_map(|meta| {
                let key = meta.location.as_ref();
                let relative = if root.is_empty() {
                    key
                } else {
                    key.strip_prefix(root.as_str())?.strip_prefix('/')?
                };
                keep(relative).then(|| format!("{base}/{relative}"))
            })
            .collect();
        urls.sort();
        Ok(urls)
    }

    /// The bytes of the object at `url`, at most `max_bytes` of them
    /// (a larger object is refused without being read past the cap).
    pub fn fetch(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, StorageError> {
        let (client, path) = self.locate(url)?;
        let store_error = |source| StorageError::Store {
            url: url.to_owned(),
            source,
        };
        let permits = Arc::clone(&self.permits);
        self.runtime.block_on(async move {
            // Closed never: the semaphore lives as long as `self`.
            let _permit = permits.acquire_owned().await.ok();
            let result = client.get(&path).await.map_err(store_error)?;
            if result.meta.size > max_bytes {
                return Err(StorageError::TooLarge {
                    url: url.to_owned(),
                    max_bytes,
                });
            }
            let mut stream = result.into_stream();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.try_next().await.map_err(store_error)? {
                if (bytes.len() + chunk.len()) as u64 > max_bytes {
                    return Err(StorageError::TooLarge {
                        url: url.to_owned(),
                        max_bytes,
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        })
    }
}

impl Storage {
    /// Writes `bytes` as the object at `url` in one request (an object
    /// store's PUT is atomic: readers see the old object or the whole new
    /// one).
    pub fn put(&self, url: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let (client, path) = self.locate(url)?;
        let payload = object_store::PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(client.put(&path, payload))
            .map(drop)
            .map_err(|source| StorageError::Store {
                url: url.to_owned(),
                source,
            })
    }

    /// Deletes the object at `url`; deleting what does not exist succeeds.
    pub fn delete(&self, url: &str) -> Result<(), StorageError> {
        let (client, path) = self.locate(url)?;
        match self.runtime.block_on(client.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StorageError::Store {
                url: url.to_owned(),
                source,
            }),
        }
    }

    /// The names directly below the "folder" `prefix` (objects and
    /// common prefixes, one level, `/` as the delimiter), sorted.
    pub fn children(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let (client, path) = self.locate(prefix)?;
        let listing = self
            .runtime
            .block_on(client.list_with_delimiter(Some(&path)))
            .map_err(|source| StorageError::Store {
                url: prefix.to_owned(),
                source,
            })?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .chain(listing.objects.iter().map(|meta| &meta.location))
            .filter_map(|location| location.filename().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_list_and_fetch_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("pics/sub")).unwrap();
        fs_err::write(dir.path().join("pics/a.png"), b"aaaa").unwrap();
        fs_err::write(dir.path().join("pics/sub/b.jpg"), b"bb").unwrap();
        fs_err::write(dir.path().join("pics/notes.txt"), b"x").unwrap();
        let storage = Storage::new(StorageOptions::default()).unwrap();
        let prefix = format!("file://{}/pics", dir.path().display());
        let urls = storage.list(&prefix, |key| !key.ends_with(".txt")).unwrap();
        assert_eq!(
            urls,
            vec![format!("{prefix}/a.png"), format!("{prefix}/sub/b.jpg")]
        );
        assert_eq!(storage.fetch(&urls[0], 4).unwrap(), b"aaaa");
        assert!(matches!(
            storage.fetch(&urls[0], 3),
            Err(StorageError::TooLarge { .. })
        ));
        let missing = storage.fetch(&format!("{prefix}/missing.png"), 10);
        assert!(missing.is_err_and(|error| error.is_not_found()));
    }

    #[test]
    fn file_urls_put_list_one_level_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(StorageOptions::default()).unwrap();
        let base = format!("file://{}/results", dir.path().display());
        storage
            .put(&format!("{base}/f/shard-0/part-1.jsonl"), b"one")
            .unwrap();
        storage
            .put(&format!("{base}/f/shard-0/done.json"), b"{}")
            .unwrap();
        storage
            .put(&format!("{base}/f/shard-1/part-0.jsonl"), b"two")
            .unwrap();
        assert_eq!(
            storage.children(&format!("{base}/f")).unwrap(),
            vec!["shard-0", "shard-1"]
        );
        assert_eq!(
            storage.children(&format!("{base}/f/shard-0")).unwrap(),
            vec!["done.json", "part-1.jsonl"]
        );
        assert!(storage.children(&format!("{base}/g")).unwrap().is_empty());
        assert_eq!(
            storage
                .fetch(&format!("{base}/f/shard-1/part-0.jsonl"), 10)
                .unwrap(),
            b"two"
        );
        storage
            .delete(&format!("{base}/f/shard-0/done.json"))
            .unwrap();
        storage
            .delete(&format!("{base}/f/shard-0/done.json"))
            .unwrap();
        assert_eq!(
            storage.children(&format!("{base}/f/shard-0")).unwrap(),
            vec!["part-1.jsonl"]
        );
    }

    #[test]
    fn only_object_store_schemes_are_urls() {
        for (text, expected) in [
            ("s3://bucket/p", true),
            ("gs://b", true),
            ("az://c/p", true),
            ("file:///x", true),
            ("http://host/x", false),
            ("/local/dir", false),
            ("S3://bucket", false),
        ] {
            assert_eq!(is_object_url(text), expected, "{text}");
        }
    }
}
