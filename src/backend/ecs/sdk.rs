//! The seam's real implementation: the official AWS SDK, with explicit time limits and retries,
//! errors in the plan's terms, and each call that changes something reported just before it is
//! made.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{Cluster, Service, Tag, TaskDefinition, TaskDefinitionField};
use aws_sdk_elasticloadbalancingv2::types::{Action, Listener, Rule, TargetGroup};

use super::api::{Call, Described, EcsApi, NewRevision};
use super::{EcsError, Limits};
use crate::exec::Executor;
use crate::plan::EcsAws;

struct Clients {
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    region: String,
}

pub struct SdkApi {
    aws: EcsAws,
    limits: Limits,
    /// Told of each call that changes something (shown with --verbose).
    exec: Arc<dyn Executor>,
    /// Connected on first use: nothing talks to AWS before the backend's first call.
    clients: tokio::sync::OnceCell<Clients>,
}

impl SdkApi {
    pub fn new(aws: &EcsAws, limits: Limits, exec: Arc<dyn Executor>) -> Self {
        SdkApi {
            aws: aws.clone(),
            limits,
            exec,
            clients: tokio::sync::OnceCell::new(),
        }
    }

    async fn clients(&self) -> Result<&Clients, EcsError> {
        self.clients
            .get_or_try_init(|| connect(&self.aws, &self.limits))
            .await
    }

    /// Reports the call when it changes something, then sends it with the time limit every call
    /// has.
    async fn send<T, E, R>(
        &self,
        call: Call<'_>,
        request: impl Future<Output = Result<T, aws_sdk_ecs::error::SdkError<E, R>>>,
    ) -> Result<T, EcsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        if call.changes_something() {
            call.report_to(self.exec.as_ref());
        }
        bounded(&call, &self.limits, request).await
    }
}

#[async_trait]
impl EcsApi for SdkApi {
    fn region(&self) -> String {
        self.clients
            .get()
            .map(|c| c.region.clone())
            .or_else(|| self.aws.region.clone())
            .unwrap_or_else(|| "of the environment".into())
    }

    async fn resolve_credentials(&self) -> Result<(), EcsError> {
        self.clients().await.map(|_| ())
    }

    async fn describe_clusters(&self, cluster: &str) -> Result<Vec<Cluster>, EcsError> {
        let ecs = &self.clients().await?.ecs;
        let call = Call::DescribeClusters { cluster };
        let out = self
            .send(call, ecs.describe_clusters().clusters(cluster).send())
            .await?;
        Ok(out.clusters().to_vec())
    }

    async fn describe_services(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<Service>, EcsError> {
        let ecs = &self.clients().await?.ecs;
        let call = Call::DescribeServices { cluster, service };
        let request = ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send();
        Ok(self.send(call, request).await?.services().to_vec())
    }

    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<Option<Described>, EcsError> {
        let ecs = &self.clients().await?.ecs;
        let call = Call::DescribeTaskDefinition { task_definition };
        let request = ecs
            .describe_task_definition()
            .task_definition(task_definition)
            .include(TaskDefinitionField::Tags)
            .send();
        let out = self.send(call, request).await?;
        Ok(out.task_definition().map(|td| Described {
            task_definition: td.clone(),
            tags: out.tags().to_vec(),
        }))
    }

    async fn register_task_definition(
        &self,
        revision: &NewRevision,
    ) -> Result<TaskDefinition, EcsError> {
        let ecs = &self.clients().await?.ecs;
        let call = Call::RegisterTaskDefinition(revision);
        let request = register_request(ecs, &revision.definition, &revision.tags).send();
        let out = self.send(call, request).await?;
        out.task_definition().cloned().ok_or_else(|| EcsError::Api {
            service: call.service(),
            operation: call.operation(),
            code: None,
            message: "the answer holds no task definition".into(),
        })
    }

    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        task_definition: &str,
    ) -> Result<(), EcsError> {
        let ecs = &self.clients().await?.ecs;
        let call = Call::UpdateService {
            cluster,
            service,
            task_definition,
        };
        let request = ecs
            .update_service()
            .cluster(cluster)
            .service(service)
            .task_definition(task_definition)
            .send();
        self.send(call, request).await.map(|_| ())
    }

    async fn describe_target_groups(&self, arn: &str) -> Result<Vec<TargetGroup>, EcsError> {
        let elb = &self.clients().await?.elb;
        let call = Call::DescribeTargetGroups { arn };
        let request = elb.describe_target_groups().target_group_arns(arn).send();
        Ok(self.send(call, request).await?.target_groups().to_vec())
    }

    async fn describe_listeners(&self, arn: &str) -> Result<Vec<Listener>, EcsError> {
        let elb = &self.clients().await?.elb;
        let call = Call::DescribeListeners { arn };
        let request = elb.describe_listeners().listener_arns(arn).send();
        Ok(self.send(call, request).await?.listeners().to_vec())
    }

    async fn describe_rules(&self, arn: &str) -> Result<Vec<Rule>, EcsError> {
        let elb = &self.clients().await?.elb;
        let call = Call::DescribeRules { arn };
        let request = elb.describe_rules().rule_arns(arn).send();
        Ok(self.send(call, request).await?.rules().to_vec())
    }

    async fn modify_listener(&self, arn: &str, default_actions: &[Action]) -> Result<(), EcsError> {
        let elb = &self.clients().await?.elb;
        let call = Call::ModifyListener {
            arn,
            actions: default_actions,
        };
        let request = elb
            .modify_listener()
            .listener_arn(arn)
            .set_default_actions(Some(default_actions.to_vec()))
            .send();
        self.send(call, request).await.map(|_| ())
    }

    async fn modify_rule(&self, arn: &str, actions: &[Action]) -> Result<(), EcsError> {
        let elb = &self.clients().await?.elb;
        let call = Call::ModifyRule { arn, actions };
        let request = elb
            .modify_rule()
            .rule_arn(arn)
            .set_actions(Some(actions.to_vec()))
            .send();
        self.send(call, request).await.map(|_| ())
    }
}

// ---- AWS configuration ----

/// The SDK's configuration: the standard chains for credentials and region, the plan's region
/// and endpoint when given, explicit retries and time limits, and an HTTPS client on rustls with
/// ring (the TLS stack reqwest already brings).
pub fn config_loader(aws: &EcsAws, limits: &Limits) -> aws_config::ConfigLoader {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(limits.max_attempts)
                .with_initial_backoff(limits.initial_backoff)
                .with_max_backoff(limits.max_backoff),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect)
                .operation_attempt_timeout(limits.attempt)
                .operation_timeout(limits.operation)
                .build(),
        );
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

async fn connect(aws: &EcsAws, limits: &Limits) -> Result<Clients, EcsError> {
    use aws_sdk_ecs::config::ProvideCredentials;

    // Loading reads profile files and may ask the region chain; bounded like any call.
    let config = tokio::time::timeout(limits.credentials, config_loader(aws, limits).load())
        .await
        .map_err(|_| EcsError::CredentialsTimeout(limits.credentials))?;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        return Err(EcsError::NoRegion);
    };
    let Some(provider) = config.credentials_provider() else {
        return Err(EcsError::NoCredentials(
            "no credentials provider is configured".into(),
        ));
    };
    let credentials = tokio::time::timeout(limits.credentials, provider.provide_credentials())
        .await
        .map_err(|_| EcsError::CredentialsTimeout(limits.credentials))?
        .map_err(|e| EcsError::NoCredentials(crate::exec::error_chain(&e)))?;
    if let Some(at) = credentials.expiry() {
        check_not_expired(at, SystemTime::now())?;
    }
    Ok(clients(&config, region))
}

fn clients(config: &SdkConfig, region: String) -> Clients {
    Clients {
        ecs: aws_sdk_ecs::Client::new(config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
        region,
    }
}

/// Credentials a provider hands out already expired (a stale `credential_process` cache, an
/// old exported session) would only fail later, with a less clear message from AWS.
fn check_not_expired(at: SystemTime, now: SystemTime) -> Result<(), EcsError> {
    if at <= now {
        return Err(EcsError::CredentialsExpired {
            at: humantime::format_rfc3339_seconds(at).to_string(),
            now: humantime::format_rfc3339_seconds(now).to_string(),
        });
    }
    Ok(())
}

/// Waits for one call with a time limit of its own, on top of the SDK's: the SDK's operation
/// timeout bounds its retries, this one bounds everything else (credential refreshes included).
async fn bounded<T, E, R>(
    call: &Call<'_>,
    limits: &Limits,
    request: impl Future<Output = Result<T, aws_sdk_ecs::error::SdkError<E, R>>>,
) -> Result<T, EcsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (service, operation) = (call.service(), call.operation());
    let limit = limits.operation + limits.credentials;
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(err)) => {
            let code = err.code().map(str::to_string);
            let message = match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => crate::exec::error_chain(&err),
            };
            Err(EcsError::Api {
                service,
                operation,
                code,
                message,
            })
        }
        Err(_) => Err(EcsError::Timeout {
            service,
            operation,
            after: limit,
        }),
    }
}

/// A RegisterTaskDefinition request that carries over every registrable field of `td`.
/// (The fields left out are the ones ECS sets itself: ARN, revision, status, compatibilities,
/// requiresAttributes and the registration dates.)
fn register_request(
    ecs: &aws_sdk_ecs::Client,
    td: &TaskDefinition,
    tags: &[Tag],
) -> aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder
{
    ecs.register_task_definition()
        .set_family(td.family.clone())
        .set_task_role_arn(td.task_role_arn.clone())
        .set_execution_role_arn(td.execution_role_arn.clone())
        .set_network_mode(td.network_mode.clone())
        .set_container_definitions(td.container_definitions.clone())
        .set_volumes(td.volumes.clone())
        .set_placement_constraints(td.placement_constraints.clone())
        .set_requires_compatibilities(td.requires_compatibilities.clone())
        .set_cpu(td.cpu.clone())
        .set_memory(td.memory.clone())
        .set_tags((!tags.is_empty()).then(|| tags.to_vec()))
        .set_pid_mode(td.pid_mode.clone())
        .set_ipc_mode(td.ipc_mode.clone())
        .set_proxy_configuration(td.proxy_configuration.clone())
        .set_inference_accelerators(td.inference_accelerators.clone())
        .set_ephemeral_storage(td.ephemeral_storage.clone())
        .set_runtime_platform(td.runtime_platform.clone())
        .set_enable_fault_injection(td.enable_fault_injection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::backend::ecs::fake::{TD1, task_definition};

    #[test]
    fn expired_credentials_say_what_to_do() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let err = check_not_expired(now - Duration::from_secs(60), now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the AWS credentials expired at 2027-01-15T07:59:00Z (now 2027-01-15T08:00:00Z); refresh them (for example `aws sso login`) and run again"
        );
        assert!(check_not_expired(now + Duration::from_secs(60), now).is_ok());
    }

    #[test]
    fn the_registration_carries_every_field_over() {
        let ecs = aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let td = task_definition();
        assert_eq!(td.task_definition_arn(), Some(TD1));
        let tags = vec![Tag::builder().key("team").value("payments").build()];
        let request = register_request(&ecs, &td, &tags);
        let input = request.as_input();
        assert_eq!(input.get_family(), &td.family);
        assert_eq!(input.get_task_role_arn(), &td.task_role_arn);
        assert_eq!(input.get_execution_role_arn(), &td.execution_role_arn);
        assert_eq!(input.get_network_mode(), &td.network_mode);
        assert_eq!(input.get_container_definitions(), &td.container_definitions);
        assert_eq!(input.get_volumes(), &td.volumes);
        assert_eq!(
            input.get_requires_compatibilities(),
            &td.requires_compatibilities
        );
        assert_eq!(input.get_cpu(), &td.cpu);
        assert_eq!(input.get_memory(), &td.memory);
        assert_eq!(input.get_pid_mode(), &td.pid_mode);
        assert_eq!(input.get_ipc_mode(), &td.ipc_mode);
        assert_eq!(input.get_ephemeral_storage(), &td.ephemeral_storage);
        assert_eq!(input.get_runtime_platform(), &td.runtime_platform);
        assert_eq!(input.get_enable_fault_injection(), &Some(true));
        assert_eq!(input.get_tags(), &Some(tags));
        assert_eq!(register_request(&ecs, &td, &[]).get_tags(), &None);
    }

    /// A stand-in for the ECS API on 127.0.0.1: answers each request with the next of
    /// `answers` (status and JSON body), or never answers once they run out.
    async fn http_stand_in(
        answers: Vec<(u16, &'static str)>,
    ) -> (String, Arc<std::sync::Mutex<u32>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::Mutex::new(0u32));
        let answers = Arc::new(std::sync::Mutex::new(answers.into_iter()));
        let counter = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let answers = answers.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        // One request: headers, then a body of Content-Length bytes.
                        let mut chunk = [0u8; 4096];
                        let head_end = loop {
                            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buffer.len() < head_end + length {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buffer.drain(..head_end + length);
                        *counter.lock().unwrap() += 1;
                        let next = answers.lock().unwrap().next();
                        let Some((status, body)) = next else {
                            // Hold the connection open without answering.
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: 1\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    const QUICK: Limits = Limits {
        connect: Duration::from_secs(1),
        attempt: Duration::from_millis(300),
        operation: Duration::from_secs(2),
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        credentials: Duration::from_secs(2),
        poll_first: Duration::from_millis(10),
        poll_max: Duration::from_millis(10),
    };

    async fn ecs_client(url: &str) -> aws_sdk_ecs::Client {
        let aws = EcsAws {
            cluster: "prod".into(),
            region: Some("us-east-1".into()),
            endpoint_url: Some(url.to_string()),
            deploy_timeout: Duration::from_secs(1),
        };
        let config = config_loader(&aws, &QUICK)
            .credentials_provider(aws_sdk_ecs::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .load()
            .await;
        aws_sdk_ecs::Client::new(&config)
    }

    const CLUSTERS: &str =
        r#"{"clusters":[{"clusterName":"prod","status":"ACTIVE"}],"failures":[]}"#;
    const THROTTLED: &str = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;

    async fn describe_prod(
        ecs: &aws_sdk_ecs::Client,
    ) -> Result<aws_sdk_ecs::operation::describe_clusters::DescribeClustersOutput, EcsError> {
        let call = Call::DescribeClusters { cluster: "prod" };
        bounded(
            &call,
            &QUICK,
            ecs.describe_clusters().clusters("prod").send(),
        )
        .await
    }

    #[tokio::test]
    async fn throttling_is_retried_with_backoff() {
        let (url, seen) =
            http_stand_in(vec![(400, THROTTLED), (400, THROTTLED), (200, CLUSTERS)]).await;
        let ecs = ecs_client(&url).await;
        let out = describe_prod(&ecs).await.unwrap();
        assert_eq!(out.clusters()[0].status(), Some("ACTIVE"));
        assert_eq!(*seen.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn throttling_that_never_ends_is_an_error_after_max_attempts() {
        let (url, seen) = http_stand_in(vec![(400, THROTTLED); 10]).await;
        let ecs = ecs_client(&url).await;
        let err = describe_prod(&ecs).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ecs DescribeClusters failed: ThrottlingException: Rate exceeded"
        );
        assert_eq!(*seen.lock().unwrap(), QUICK.max_attempts);
    }

    #[tokio::test]
    async fn a_call_that_gets_no_answer_times_out() {
        let (url, seen) = http_stand_in(vec![]).await;
        let ecs = ecs_client(&url).await;
        let started = std::time::Instant::now();
        let err = describe_prod(&ecs).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed < QUICK.operation + Duration::from_secs(1),
            "{elapsed:?}"
        );
        // Each attempt timed out and was retried, until the operation's own limit.
        assert!(*seen.lock().unwrap() >= 2, "{}", *seen.lock().unwrap());
        assert!(err.to_string().contains("timeout"), "{err}");
    }
}
