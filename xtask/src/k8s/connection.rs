//! One connection to one cluster: the tokio runtime its API calls run on and the client they
//! share, opened once per command. Flows, `cluster`, `up` and `bench` all reach the API through
//! it, so a command that waits for ten things builds one runtime and one client, not ten (each
//! client reads the kubeconfig and, on first use, opens its own TLS connection).
use std::future::Future;

use anyhow::Result;

use super::ClusterAccess;

pub struct Connection {
    /// xshell is synchronous, so commands stay plain functions and enter async only through
    /// [`Connection::run`].
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    access: ClusterAccess,
}

impl Connection {
    /// Reads the kubeconfig (the context `access` names) and builds the client; nothing is sent
    /// yet, so an unreachable cluster is reported by the first call that needs it.
    pub fn open(access: ClusterAccess) -> Result<Connection> {
        #[allow(clippy::disallowed_methods)] // the one place a command's runtime is made
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let client = runtime.block_on(super::client_for(&access))?;
        Ok(Connection { runtime, client, access })
    }

    /// A connection over a client made elsewhere (tests: a mock API server on `runtime`).
    pub fn over(runtime: tokio::runtime::Runtime, client: kube::Client, access: ClusterAccess) -> Connection {
        Connection { runtime, client, access }
    }

    /// The client every API call of this command shares (kube clients are cheap to clone: the
    /// clone shares the connection pool).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The kubeconfig and context this connection reaches: what helm is given too.
    pub fn access(&self) -> &ClusterAccess {
        &self.access
    }

    /// Runs async API work from synchronous code (helm and docker calls stay off the runtime).
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A second client for HTTP to pods through the API server (see [`super::pod_client`]).
    pub fn pod_client(&self) -> Result<kube::Client> {
        self.run(super::pod_client(&self.access))
    }

    /// The API server's address, for the line every command prints first.
    pub fn server(&self) -> Result<String> {
        self.run(super::server_of(&self.access))
    }
}
