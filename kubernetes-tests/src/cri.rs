//! A small synchronous CRI client: the calls kubelet makes to a container runtime, over the CRI
//! v1 gRPC service (the `k8s-cri` binding, tonic) on a unix socket. Each call runs to completion
//! on a single-threaded tokio runtime, with a deadline, so the cases read like kubelet's sync
//! loop: one call, then the next.

use anyhow::{anyhow, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long one call may take; RunPodSandbox (CNI) and StopContainer (a grace period) are the
/// slow ones, a few seconds at most here.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

pub struct Cri {
    tokio: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI service on the unix socket `socket` (containerd's own socket: the CRI
    /// plugin serves on it).
    pub fn connect(socket: &Path) -> Result<Self> {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime")?;
        let path = PathBuf::from(socket);
        let channel = tokio
            .block_on(async {
                // The URI is required but unused: every connection goes to the socket.
                Endpoint::from_static("http://[::1]:0")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                        }
                    }))
                    .await
            })
            .with_context(|| {
                format!("cannot connect to the CRI service on {}", socket.display())
            })?;
        Ok(Cri {
            tokio,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// Runs one call to completion, within the deadline, naming it in the error.
    fn call<T, F>(&self, name: &str, call: F) -> Result<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match self
            .tokio
            .block_on(async { tokio::time::timeout(CALL_DEADLINE, call).await })
        {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(anyhow!("{name}: {:?}: {}", status.code(), status.message())),
            Err(_) => Err(anyhow!("{name}: no answer in {CALL_DEADLINE:?}")),
        }
    }

    pub fn version(&self) -> Result<VersionResponse> {
        let mut client = self.runtime.clone();
        self.call("Version", client.version(VersionRequest::default()))
    }

    /// Whether the runtime says it is ready, with its network: kubelet's node readiness.
    pub fn status(&self) -> Result<RuntimeStatus> {
        let mut client = self.runtime.clone();
        let response = self.call("Status", client.status(StatusRequest { verbose: false }))?;
        response
            .status
            .ok_or_else(|| anyhow!("Status: no status in the answer"))
    }

    pub fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let mut client = self.images.clone();
        let request = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(self
            .call("ImageStatus", client.image_status(request))?
            .image)
    }

    pub fn run_pod_sandbox(&self, config: &PodSandboxConfig, handler: &str) -> Result<String> {
        let mut client = self.runtime.clone();
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        Ok(self
            .call("RunPodSandbox", client.run_pod_sandbox(request))?
            .pod_sandbox_id)
    }

    /// The sandbox's status and, verbose, containerd's `info` (its pid, runtime spec, netns).
    pub fn pod_sandbox_status(
        &self,
        id: &str,
    ) -> Result<(PodSandboxStatus, HashMap<String, String>)> {
        let mut client = self.runtime.clone();
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        let response = self.call("PodSandboxStatus", client.pod_sandbox_status(request))?;
        let status = response
            .status
            .ok_or_else(|| anyhow!("PodSandboxStatus: no status for {id}"))?;
        Ok((status, response.info))
    }

    pub fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let mut client = self.runtime.clone();
        let request = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        Ok(self
            .call("CreateContainer", client.create_container(request))?
            .container_id)
    }

    pub fn start_container(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = StartContainerRequest {
            container_id: id.to_string(),
        };
        self.call("StartContainer", client.start_container(request))?;
        Ok(())
    }

    /// The container's status and, verbose, containerd's `info` (its pid, runtime spec).
    pub fn container_status(&self, id: &str) -> Result<(ContainerStatus, HashMap<String, String>)> {
        let mut client = self.runtime.clone();
        let request = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        };
        let response = self.call("ContainerStatus", client.container_status(request))?;
        let status = response
            .status
            .ok_or_else(|| anyhow!("ContainerStatus: no status for {id}"))?;
        Ok((status, response.info))
    }

    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout: Duration) -> Result<ExecSyncResponse> {
        let mut client = self.runtime.clone();
        let request = ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout.as_secs() as i64,
        };
        self.call("ExecSync", client.exec_sync(request))
    }

    /// Asks for an exec session: the answer is a URL on the streaming server, which the caller
    /// then connects to (see `stream`).
    pub fn exec(&self, id: &str, cmd: &[&str]) -> Result<String> {
        let mut client = self.runtime.clone();
        let request = ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
        };
        Ok(self.call("Exec", client.exec(request))?.url)
    }

    pub fn reopen_container_log(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = ReopenContainerLogRequest {
            container_id: id.to_string(),
        };
        self.call("ReopenContainerLog", client.reopen_container_log(request))?;
        Ok(())
    }

    /// Stops a container: SIGTERM (the image's stop signal), then SIGKILL after `grace`.
    pub fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = StopContainerRequest {
            container_id: id.to_string(),
            timeout: grace.as_secs() as i64,
        };
        self.call("StopContainer", client.stop_container(request))?;
        Ok(())
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = RemoveContainerRequest {
            container_id: id.to_string(),
        };
        self.call("RemoveContainer", client.remove_container(request))?;
        Ok(())
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.call("StopPodSandbox", client.stop_pod_sandbox(request))?;
        Ok(())
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.call("RemovePodSandbox", client.remove_pod_sandbox(request))?;
        Ok(())
    }
}

pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
