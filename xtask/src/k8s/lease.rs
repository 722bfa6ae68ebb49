//! One flow at a time per release: a coordination.k8s.io Lease in the release's namespace.
//! The holder renews it while it runs; a holder that dies (killed, machine gone) stops renewing
//! and the lease expires, so a crashed run never blocks the release for long.
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::Api;

/// A holder that has not renewed for this long is presumed dead.
const LEASE_SECONDS: i32 = 60;
/// How often a live holder renews (well inside LEASE_SECONDS).
const RENEW_EVERY: Duration = Duration::from_secs(15);

/// A held lease; renewed in the background until [`Held::release`] (or drop).
pub struct Held {
    api: Api<Lease>,
    name: String,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

/// Takes lease `name` for `holder`, or fails naming who holds it and until when.
/// Must be called inside the tokio runtime that keeps running while the flow works.
pub async fn acquire(client: &kube::Client, namespace: &str, name: &str, holder: &str) -> Result<Held> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let now = Timestamp::now();
    let spec = LeaseSpec {
        holder_identity: Some(holder.to_owned()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..Default::default()
    };
    let lease = Lease { metadata: ObjectMeta { name: Some(name.to_owned()), ..Default::default() }, spec: Some(spec.clone()) };
    match api.create(&PostParams::default(), &lease).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let mut existing = api.get(name).await.with_context(|| format!("reading Lease {name}"))?;
            if let Some(held_by) = live_holder(&existing, now).filter(|h| !died_on_this_machine(h)) {
                let expires = expiry(&existing).map(|t| t.to_string()).unwrap_or_default();
                bail!(
                    "another shipshape flow is running on this release: Lease {namespace}/{name} is held by {held_by}. \
                     Wait for it to finish (`cargo xtask status` shows it). If that run died, its lease expires by itself \
                     at {expires} (it is renewed every {}s while the run is alive).",
                    RENEW_EVERY.as_secs()
                );
            }
            existing.spec = Some(spec);
            api.replace(name, &PostParams::default(), &existing)
                .await
                .with_context(|| format!("taking over the expired Lease {name} (someone else may have just taken it)"))?;
        }
        Err(err) => return Err(err).with_context(|| format!("creating Lease {namespace}/{name}")),
    }
    let renewer = tokio::spawn(renew_forever(api.clone(), name.to_owned(), holder.to_owned()));
    Ok(Held { api, name: name.to_owned(), holder: holder.to_owned(), renewer })
}

/// A holder identity ends with `pid N)` and starts with `user@host`: a holder on this machine
/// whose process is gone died (killed, crashed) and will never renew, so there is no need to
/// wait for its lease to expire.
fn died_on_this_machine(holder: &str) -> bool {
    let this_host = crate::journal::actor();
    let Some(host) = this_host.split('@').nth(1) else { return false };
    let same_host = holder.split_whitespace().next().and_then(|actor| actor.split('@').nth(1)) == Some(host);
    let pid = holder.rsplit("pid ").next().and_then(|rest| rest.trim_end_matches(')').trim().parse::<u32>().ok());
    match pid {
        Some(pid) if same_host && pid != std::process::id() => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// Who holds the lease right now, if anyone (an expired lease has no live holder).
pub fn live_holder(lease: &Lease, now: Timestamp) -> Option<String> {
    let holder = lease.spec.as_ref()?.holder_identity.clone()?;
    (expiry(lease)? > now).then_some(holder)
}

/// The lease's current holder in `namespace`, if a live one: not expired, and not a process on
/// this machine that is gone (its lease has not expired yet, but it will never renew it).
pub async fn current_holder(client: &kube::Client, namespace: &str, name: &str) -> Result<Option<String>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?.and_then(|lease| live_holder(&lease, Timestamp::now())).filter(|h| !died_on_this_machine(h)))
}

/// Whether `holder` still holds lease `name`: read now, not assumed from the renewals (a renewal
/// that failed only warned). kube-runtime's leader election is the model: a holder that cannot
/// show its lease is still its own stops acting, since once the lease expired another run may
/// have taken it. Err when it cannot be read (the API is unreachable): nothing is shown.
pub async fn still_held(client: &kube::Client, namespace: &str, name: &str, holder: &str) -> Result<Option<String>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = api.get_opt(name).await.with_context(|| format!("reading Lease {namespace}/{name} before a change"))?;
    let Some(lease) = lease else {
        return Ok(Some(format!("the release's Lease {name} is gone (deleted while this run held it)")));
    };
    let now = Timestamp::now();
    Ok(match live_holder(&lease, now) {
        Some(live) if live == holder => None,
        Some(other) => Some(format!("the release's Lease {name} is held by {other} now")),
        None => Some(format!(
            "the release's Lease {name} expired at {} (its renewals failed: the API server was unreachable for longer than {LEASE_SECONDS} s), \
             so another run may have taken the release",
            expiry(&lease).map(|t| t.to_string()).unwrap_or_default()
        )),
    })
}

fn expiry(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    renewed.checked_add(SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS) as i64)).ok()
}

async fn renew_forever(api: Api<Lease>, name: String, holder: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let result = async {
            let mut lease = api.get(&name).await?;
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(holder.as_str()) {
                bail!("it is now held by {}", spec.holder_identity.clone().unwrap_or_default());
            }
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            api.replace(&name, &PostParams::default(), &lease).await?;
            Ok(())
        }
        .await;
        if let Err(err) = result {
            eprintln!("warning: could not renew Lease {name}: {err:#}");
        }
    }
}

impl Held {
    /// Stops renewing and deletes the lease (only if still ours).
    pub async fn release(self) -> Result<()> {
        self.renewer.abort();
        if let Some(lease) = self.api.get_opt(&self.name).await? {
            if lease.spec.and_then(|s| s.holder_identity).as_deref() == Some(self.holder.as_str()) {
                match self.api.delete(&self.name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(err) => return Err(err).context("releasing the Lease"),
                }
            }
        }
        Ok(())
    }
}
