//! How a peer is set up: its identity from a key file, and the one peer
//! configuration names, opened when a cache first uses `backend = "dht"`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use libp2p::identity;
use parking_lot::Mutex;

use super::DhtStore;
use crate::spec::{Config, DhtOptions};
use crate::store::{Remote, StoreError, StoreRemote};

/// The identity in `path`, created there if absent.
pub(super) fn identity_from(path: &Path) -> Result<identity::Keypair, StoreError> {
    let bad = |m: String| StoreError::Unsupported(format!("dht.key_file {}: {m}", path.display()));
    match std::fs::read(path) {
        Ok(bytes) => {
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                bad(format!(
                    "holds {} bytes, not a 32-byte ed25519 secret",
                    bytes.len()
                ))
            })?;
            identity::Keypair::ed25519_from_bytes(secret).map_err(|e| bad(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = identity::Keypair::generate_ed25519();
            let secret = kp
                .clone()
                .try_into_ed25519()
                .map_err(|e| bad(e.to_string()))?
                .secret();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
            }
            write_secret(path, secret.as_ref()).map_err(|e| bad(e.to_string()))?;
            Ok(kp)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(bytes)
}

/// The peer configuration names: started once per process.
fn open_configured(config: &Config) -> Result<Arc<dyn Remote>, StoreError> {
    type Running = Option<(DhtOptions, Arc<StoreRemote>)>;
    static OPEN: OnceLock<Mutex<Running>> = OnceLock::new();
    let opts = config.dht_options().map_err(StoreError::Unsupported)?;
    let mut open = OPEN.get_or_init(Default::default).lock();
    if let Some((running, r)) = &*open {
        if *running == opts {
            return Ok(r.clone());
        }
        return Err(StoreError::Unsupported(
            "dht: this process's peer already runs with other [dht] options; restart to change them".into(),
        ));
    }
    let store = DhtStore::start(&opts)?;
    let remote = store.tier(&config.remote.clone().unwrap_or_default())?;
    *open = Some((opts, remote.clone()));
    Ok(remote)
}

inventory::submit!(crate::store::backends::Factory {
    name: "dht",
    open: open_configured,
});
