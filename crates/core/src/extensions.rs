//! A type map: one value per type.
//!
//! [`AppBuilder`](crate::AppBuilder) and [`App`](crate::App) carry one, so crates that this
//! one does not know (the database, the scheduler, messaging, …) can keep their own typed
//! state in the builder through extension traits, and the host can hand services to
//! plugins. It is the same idea as bevy's resources and `http::Extensions`.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;

/// Typed storage holding at most one value of each type.
#[derive(Default)]
pub struct Extensions {
    map: HashMap<TypeId, (&'static str, Box<dyn Any + Send + Sync>)>,
}

impl Extensions {
    /// Stores `value`, returning the previous value of that type if there was one.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        self.map
            .insert(TypeId::of::<T>(), (type_name::<T>(), Box::new(value)))
            .and_then(|(_, old)| old.downcast().ok().map(|boxed| *boxed))
    }

    /// The stored value of type `T`.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.get(&TypeId::of::<T>()).and_then(|(_, value)| value.downcast_ref())
    }

    /// The stored value of type `T`, mutably.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.map.get_mut(&TypeId::of::<T>()).and_then(|(_, value)| value.downcast_mut())
    }

    /// The stored value of type `T`, inserting `T::default()` first when there is none.
    ///
    /// # Panics
    ///
    /// Never: values are stored under their own type's id, so the downcast cannot fail.
    pub fn get_or_default<T: Default + Send + Sync + 'static>(&mut self) -> &mut T {
        let (_, value) = self
            .map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| (type_name::<T>(), Box::new(T::default())));
        // The entry was created with a `T` under `T`'s id, so the downcast cannot fail;
        // recover by replacing it rather than panicking in library code.
        if !value.is::<T>() {
            *value = Box::new(T::default());
        }
        match value.downcast_mut() {
            Some(value) => value,
            None => unreachable!("the value was just checked to be a {}", type_name::<T>()),
        }
    }

    /// Removes and returns the stored value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.map
            .remove(&TypeId::of::<T>())
            .and_then(|(_, value)| value.downcast().ok().map(|boxed| *boxed))
    }

    /// Whether a value of type `T` is stored.
    pub fn contains<T: Send + Sync + 'static>(&self) -> bool {
        self.map.contains_key(&TypeId::of::<T>())
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.map.values().map(|(name, _)| *name).collect();
        names.sort_unstable();
        f.debug_set().entries(names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_one_value_per_type() {
        let mut ext = Extensions::default();
        assert_eq!(ext.insert(1u32), None);
        assert_eq!(ext.insert(2u32), Some(1));
        ext.insert("text");
        assert_eq!(ext.get::<u32>(), Some(&2));
        assert_eq!(ext.get::<&str>(), Some(&"text"));
        *ext.get_or_default::<Vec<u8>>() = vec![7];
        ext.get_or_default::<Vec<u8>>().push(8);
        assert_eq!(ext.remove::<Vec<u8>>(), Some(vec![7, 8]));
        assert!(!ext.contains::<Vec<u8>>());
        assert_eq!(format!("{ext:?}"), "{\"&str\", \"u32\"}");
    }
}
