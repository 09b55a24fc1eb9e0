//! Request-scoped values kept in thread-locals while a request's future is polled: cheaper
//! than an extension per request, and visible to everything the poll reaches.

use std::cell::Cell;
use std::thread::LocalKey;

/// Runs `f` with the thread-local `slot` holding `value`, then puts the previous value
/// back, also when `f` unwinds, and returns `f`'s result with what `slot` held at the end
/// (normally `value`, to be kept for the next poll). Scopes nest.
pub fn scoped<T: 'static, R>(
    slot: &'static LocalKey<Cell<Option<T>>>,
    value: Option<T>,
    f: impl FnOnce() -> R,
) -> (R, Option<T>) {
    /// What to put back if `f` unwinds; `None` once put back.
    struct Restore<T: 'static> {
        slot: &'static LocalKey<Cell<Option<T>>>,
        previous: Option<Option<T>>,
    }
    impl<T: 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            if let Some(previous) = self.previous.take() {
                self.slot.set(previous);
            }
        }
    }
    let mut restore = Restore { slot, previous: Some(slot.replace(value)) };
    let result = f();
    let value = slot.replace(restore.previous.take().flatten());
    (result, value)
}

/// A clone of what the thread-local `slot` holds.
pub fn current<T: Clone + 'static>(slot: &'static LocalKey<Cell<Option<T>>>) -> Option<T> {
    let value = slot.take();
    slot.set(value.clone());
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOT: Cell<Option<u32>> = const { Cell::new(None) };
    }

    #[test]
    fn scopes_nest_and_restore_even_on_unwind() {
        let (inner, kept) = scoped(&SLOT, Some(1), || {
            let (seen, kept) = scoped(&SLOT, Some(2), || current(&SLOT));
            assert_eq!((seen, kept), (Some(2), Some(2)));
            current(&SLOT)
        });
        assert_eq!((inner, kept, current(&SLOT)), (Some(1), Some(1), None));
        let unwound = std::panic::catch_unwind(|| scoped(&SLOT, Some(3), || panic!("boom")));
        assert!(unwound.is_err());
        assert_eq!(current(&SLOT), None);
    }
}
