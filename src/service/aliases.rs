//! Moving a model alias. The command line and the HTTP API both go through
//! [`lifecycle::promote`] and [`lifecycle::rollback`]; a serving process also swaps its model
//! when the alias is `production`.

use super::Service;
use crate::ml::PRODUCTION;
use crate::ml::lifecycle::{self, LifecycleError};
use crate::ml::registry::{AliasChange, AliasMove};

/// An alias moved, and the version this process serves after the move.
pub struct Moved {
    pub moved: AliasMove,
    pub serving: Option<String>,
}

impl Service {
    /// Points `alias` at `version` (which must load); `production` is served at once.
    pub async fn promote(
        &self,
        alias: &str,
        version: &str,
        change: &AliasChange<'_>,
    ) -> Result<Moved, LifecycleError> {
        let (moved, served) = lifecycle::promote(&self.stores, alias, version, change).await?;
        Ok(self.moved(moved, served))
    }

    /// Moves `alias` back to the version it held before.
    pub async fn rollback(
        &self,
        alias: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Moved, LifecycleError> {
        let (moved, served) = lifecycle::rollback(&self.stores, alias, actor, reason).await?;
        Ok(self.moved(moved, served))
    }

    fn moved(&self, moved: AliasMove, served: crate::ml::Served) -> Moved {
        if moved.alias == PRODUCTION {
            self.install(served);
        }
        Moved {
            moved,
            serving: self.serving_version(),
        }
    }
}
