//! The threads password hashes run on: at most one per hashing permit, started only when
//! more hashes are in flight than threads, each keeping its argon2 memory for the next hash.
//!
//! Not tokio's blocking pool: it starts threads as it needs them (up to 512) and ends them
//! when idle, and glibc gives each thread that allocates an arena of its own. A freed
//! 19 MiB argon2 block also raises glibc's threshold for serving allocations by `mmap`, so
//! from then on every thread's block came from its arena and stayed there: the server
//! grew by 19 MiB for every thread the pool had ever hashed on. Here a thread allocates its
//! block once, on its first hash, and there are never more threads than permits, so
//! hashing holds at most `max_concurrent` blocks, and saves allocating and faulting in
//! 19 MiB per hash besides.
//!
//! Jobs go through one channel that every thread takes from. A job carries its permit, so
//! a caller that goes away (a client that hangs up) frees its permit only once its hash is
//! done, and never lets more hashes run than permits. A job that panics drops its reply,
//! which its caller sees as [`PasswordError::Task`]; its thread catches the panic and takes
//! the next job, so the threads never dwindle.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::Block;
use tokio::sync::{Semaphore, oneshot};

use super::PasswordError;

/// Work for a hashing thread, given that thread's memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// The hashing threads and the permits that bound what they run at once.
pub(super) struct Threads {
    permits: Arc<Semaphore>,
    most: usize,
    jobs: Sender<Job>,
    queue: Arc<Mutex<Receiver<Job>>>,
    /// Threads started so far, never more than `most`.
    started: Mutex<usize>,
    /// Blocks of argon2 memory each thread keeps.
    blocks: usize,
}

impl Threads {
    /// At most `most` threads (at least 1), each keeping `blocks` blocks; none is started
    /// yet.
    pub(super) fn new(most: usize, blocks: usize) -> Self {
        let (jobs, queue) = channel();
        Self {
            permits: Arc::new(Semaphore::new(most)),
            most,
            jobs,
            queue: Arc::new(Mutex::new(queue)),
            started: Mutex::new(0),
            blocks,
        }
    }

    /// Runs `work` on a hashing thread once a permit is free.
    ///
    /// # Errors
    ///
    /// What `work` returns; [`PasswordError::Task`] if it panics, [`PasswordError::Thread`]
    /// if no thread runs and none can be started.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        // The semaphore lives as long as `self` and is never closed.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Hash("the hashing permits are closed".to_owned()))?;
        self.start_if_needed()?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let result = work(memory);
            drop(permit);
            // Nobody is waiting if the caller went away.
            let _ = reply.send(result);
        });
        // Cannot fail: `self` holds the receiving end.
        self.jobs.send(job).map_err(|_| PasswordError::Task)?;
        answer.await.map_err(|_| PasswordError::Task)?
    }

    /// Starts one more thread when more jobs hold permits than threads were started, so
    /// no job waits for another to finish while a permit is free.
    fn start_if_needed(&self) -> Result<(), PasswordError> {
        let in_flight = self.most - self.permits.available_permits();
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if *started >= in_flight {
            return Ok(());
        }
        let (queue, blocks) = (self.queue.clone(), self.blocks);
        let spawned = std::thread::Builder::new()
            .name("xcore-hash".to_owned())
            .spawn(move || serve(&queue, blocks));
        match spawned {
            Ok(_) => {
                *started += 1;
                Ok(())
            }
            // The running threads take this job in turn.
            Err(error) if *started > 0 => {
                tracing::warn!(%error, threads = *started, "cannot start another hashing thread");
                Ok(())
            }
            Err(error) => Err(PasswordError::Thread(error)),
        }
    }

    #[cfg(test)]
    fn started(&self) -> usize {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A hashing thread: takes jobs until every sender is gone.
fn serve(queue: &Mutex<Receiver<Job>>, blocks: usize) {
    let mut memory = Memory::new(blocks);
    loop {
        // The lock is held only while waiting, so the next free thread takes the next job.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        if catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            tracing::error!("a password hash panicked; its thread takes the next one");
        }
    }
}

/// A thread's argon2 memory: the configured number of blocks, allocated on first use and
/// kept. Argon2's first pass writes every block before reading it, so what a previous hash
/// left there never changes a result.
pub(super) struct Memory {
    kept: Vec<Block>,
    blocks: usize,
}

impl Memory {
    /// Memory of `blocks` blocks, not allocated yet.
    pub(super) fn new(blocks: usize) -> Self {
        Self { kept: Vec::new(), blocks }
    }

    /// Runs `work` with `count` blocks: the kept ones, or, for a hash made with more memory
    /// than configured, blocks allocated for this one call so that the thread keeps only
    /// the configured amount.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Hash`] when the memory cannot be allocated.
    pub(super) fn with_blocks<T>(
        &mut self,
        count: usize,
        work: impl FnOnce(&mut [Block]) -> T,
    ) -> Result<T, PasswordError> {
        if count > self.blocks {
            return Ok(work(&mut allocate(count)?));
        }
        if self.kept.is_empty() {
            self.kept = allocate(self.blocks)?;
        }
        let blocks = self.kept.get_mut(..count).ok_or_else(out_of_memory)?;
        Ok(work(blocks))
    }
}

/// `count` zeroed blocks, or an error rather than an abort when there is no memory.
fn allocate(count: usize) -> Result<Vec<Block>, PasswordError> {
    let mut blocks = Vec::new();
    blocks.try_reserve_exact(count).map_err(|_| out_of_memory())?;
    blocks.resize(count, Block::new());
    Ok(blocks)
}

fn out_of_memory() -> PasswordError {
    PasswordError::Hash("not enough memory for the hash".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    /// Marks a job running until `together` jobs run at once or two seconds pass; the most
    /// that ran at once.
    fn hold_until(running: &AtomicUsize, most: &AtomicUsize, together: usize) {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(2);
        while running.load(Ordering::SeqCst) < together && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(10));
        running.fetch_sub(1, Ordering::SeqCst);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threads_start_only_as_concurrent_jobs_need_them() {
        let threads = Arc::new(Threads::new(3, 1));
        for _ in 0..5 {
            threads.run(|_| Ok(())).await.unwrap();
        }
        assert_eq!(threads.started(), 1, "one job at a time needs one thread");

        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                let (threads, running, most) = (threads.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    threads
                        .run(move |_| {
                            hold_until(&running, &most, 3);
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        // Three jobs waited for one another, so a third thread had to start; never a fourth.
        assert_eq!(most.load(Ordering::SeqCst), 3);
        assert_eq!(threads.started(), 3);
    }

    #[tokio::test]
    async fn a_panicking_job_answers_an_error_and_its_thread_carries_on() {
        let threads = Threads::new(1, 1);
        let first = threads.run(|_| Ok(std::thread::current().id())).await.unwrap();
        let panicked = threads.run(|_| -> Result<(), _> { panic!("in the hash") }).await;
        assert!(matches!(panicked, Err(PasswordError::Task)), "{panicked:?}");
        let after = threads.run(|_| Ok(std::thread::current().id())).await.unwrap();
        assert_eq!((after, threads.started()), (first, 1), "the same thread took the next job");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_keeps_its_permit_until_its_job_is_done() {
        let threads = Arc::new(Threads::new(1, 1));
        let (started, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let caller = {
            let (threads, started, done) = (threads.clone(), started.clone(), done.clone());
            tokio::spawn(async move {
                threads
                    .run(move |_| {
                        started.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        done.store(true, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            })
        };
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert!(!done.load(Ordering::SeqCst), "the job runs on");
        assert_eq!(threads.permits.available_permits(), 0, "and holds the permit");
        let second = threads.run(move |_| Ok(done.load(Ordering::SeqCst))).await.unwrap();
        assert!(second, "the next job waited for it");
        assert_eq!(threads.permits.available_permits(), 1);
    }

    #[test]
    fn memory_is_allocated_once_at_the_configured_size() {
        let mut memory = Memory::new(16);
        assert!(memory.kept.is_empty(), "nothing before the first hash");
        let first = memory.with_blocks(16, |blocks| blocks.as_ptr()).unwrap();
        let smaller = memory.with_blocks(8, |blocks| (blocks.as_ptr(), blocks.len())).unwrap();
        assert_eq!(smaller, (first, 8));
        let larger = memory.with_blocks(64, |blocks| blocks.len()).unwrap();
        assert_eq!(larger, 64);
        assert_eq!((memory.kept.as_ptr(), memory.kept.len()), (first, 16), "kept as it was");
    }
}
