//! A crew: the tasks of one role of the soak (churners, slow readers), sharing the role's
//! counters, all running until the deadline and joined at the end.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;

pub(super) struct Crew<C> {
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<C>,
}

impl<C: Send + Sync + 'static> Crew<C> {
    /// Spawn `task(member, counters)` for each member.
    pub(super) fn spawn<M, F, T>(
        counters: C,
        members: impl IntoIterator<Item = M>,
        mut task: F,
    ) -> Crew<C>
    where
        F: FnMut(M, Arc<C>) -> T,
        T: Future<Output = ()> + Send + 'static,
    {
        let counters = Arc::new(counters);
        let tasks = members
            .into_iter()
            .map(|m| tokio::spawn(task(m, counters.clone())))
            .collect();
        Crew { tasks, counters }
    }

    /// Wait for every task to end; the counters they left.
    pub(super) async fn finish(self) -> Arc<C> {
        for t in self.tasks {
            // A task that panicked has counted what it did before; the soak goes on.
            let _ = t.await;
        }
        self.counters
    }
}
