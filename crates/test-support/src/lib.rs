//! Test helpers for zoo: everything a test needs to stand in for the internet.
//!
//! - [`TestServer`]: an HTTP/1.1 server on `127.0.0.1:0` that serves fixed
//!   responses, files (with `Range` support), redirects, sequences of answers
//!   (a 503 then a 200), and faults on demand (a body cut off, stalled or
//!   hanging midway, an endless body, chunked or close-delimited framing, a
//!   false `Content-Length`). It records every request it gets, headers
//!   included.
//! - [`Archive`]: zip, tar and tar.gz archives built in memory, hostile ones
//!   included (`..` names, absolute names, symlinks out of the tree).
//! - [`FakeGitHub`]: GitHub's REST API as zoo uses it (repo info, zipball with
//!   a redirect to a second host, commit lookup, private repos behind a token,
//!   rate limiting), backed by two [`TestServer`]s.
//! - [`FakeHub`]: the Hugging Face Hub's revision API and `resolve`
//!   downloads, LFS files by a redirect to a second ("CDN") host with the
//!   headers the real Hub sends, private repos behind a token, and tampering
//!   on demand; [`safetensors_bytes`] writes a `safetensors` file.
//! - [`FiftyOne`]: real FiftyOne 1.22.1 in one Python process per test
//!   binary (`ZOO_TEST_FIFTYONE_PYTHON`), driven by Python snippets.
//! - [`HOSTED_SOURCE`] and [`hosted_manifest`]: a source whose `load_model`
//!   returns numpy-only FiftyOne models, for the model host;
//!   [`HOSTED_TORCH_SOURCE`] and [`hosted_torch_manifest`]: one whose models
//!   need torch (a seeded `TorchImageModel` and other `TorchModelMixin`s).
//! - [`dir_snapshot`]: a directory tree as sorted lines, to assert that a
//!   failed operation changed nothing.
//!
//! This crate is a dev-dependency only; nothing in it reaches the network
//! beyond loopback.
//!
//! ```no_run
//! use zoo_test_support::{Response, TestServer};
//! let server = TestServer::start();
//! server.route("/hello", Response::ok("hi"));
//! let url = server.url("/hello");
//! // ... point the code under test at `url` ...
//! assert_eq!(server.requests().len(), 0);
//! ```

mod archive;
mod fiftyone;
mod github;
mod hosted;
mod hub;
mod seeded;
mod server;
mod snapshot;
mod torch_save;

pub use archive::{Archive, Entry};
pub use fiftyone::{FiftyOne, MongoServer};
pub use github::{FakeGitHub, RepoSpec, fake_sha};
pub use hosted::{
    HOSTED_MODELS, HOSTED_SOURCE, HOSTED_TORCH_MODELS, HOSTED_TORCH_SOURCE, hosted_manifest,
    hosted_torch_manifest,
};
pub use hub::{FakeHub, HubRepo, safetensors_bytes, sha256_hex};
pub use seeded::{
    FIFTYONE_APPLIES, SEED_CONVNEXT, SEED_EFFICIENTNET, SEED_VIT, SEED_YOLO, ULTRALYTICS_RELEASES,
    seed,
};
pub use server::{Fault, Framing, Handler, Request, Response, TestServer, file_response};
pub use snapshot::dir_snapshot;
pub use torch_save::{
    StateTensor, formula, formula_state_dict, torch_save_legacy, torch_save_zip,
    torch_save_zip_lazy,
};
