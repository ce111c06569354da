//! What the collection commands share: a key looked up as one type, the
//! key's removal once it is empty, and the events of removing elements.

use super::{ev, Events};
use crate::keyspace::plist::PackedList;
use crate::keyspace::{HashObj, SetObj, SlotRef, Value, ZSetObj};

/// A key looked up for a command of one type.
pub enum Typed<'v, T> {
    Missing,
    /// Holds another type (WRONGTYPE).
    Wrong,
    Found(&'v mut T),
}

/// A collection type that a `Value` may hold.
pub trait Collection {
    fn of(v: &mut Value) -> Option<&mut Self>;
    fn is_empty(&self) -> bool;
}

macro_rules! collection {
    ($t:ty, $variant:ident) => {
        impl Collection for $t {
            fn of(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn is_empty(&self) -> bool {
                <$t>::is_empty(self)
            }
        }
    };
}

collection!(PackedList, List);
collection!(SetObj, Set);
collection!(HashObj, Hash);
collection!(ZSetObj, ZSet);

pub fn lookup<'v, T: Collection>(s: &'v mut SlotRef, key: &[u8]) -> Typed<'v, T> {
    match s.get_mut(key) {
        None => Typed::Missing,
        Some(v) => T::of(v).map_or(Typed::Wrong, Typed::Found),
    }
}

/// After removing elements: deletes the key when its collection is empty,
/// else marks it modified. Returns whether the key was deleted.
pub fn settle<T: Collection>(s: &mut SlotRef, key: &[u8]) -> bool {
    let empty = s.get_mut(key).and_then(T::of).is_some_and(|x| x.is_empty());
    if empty {
        s.remove(key);
    } else {
        s.touch(key);
    }
    empty
}

/// The events of removing elements: `event` in `class`, then `del` if
/// that emptied the key.
pub fn removed_events(events: &Events, class: u32, event: &'static str, key: &[u8], deleted: bool) {
    events.emit(class, event, key);
    if deleted {
        events.emit(ev::GENERIC, "del", key);
    }
}

/// Runs `body` with the collection at `key` read as type `$t`; `missing`
/// runs (after the slot is let go) when the key does not exist, and a key
/// of another type gets WRONGTYPE.
macro_rules! with_typed {
    ($ctx:ident, $t:ty, $key:expr, $missing:expr, |$x:ident| $body:expr) => {{
        let key = $key;
        let mut s = $ctx.locks.key(key);
        match $crate::command::typed::lookup::<$t>(&mut s, key) {
            $crate::command::typed::Typed::Missing => {
                drop(s);
                $missing
            }
            $crate::command::typed::Typed::Found($x) => {
                let $x: &$t = $x;
                $body
            }
            $crate::command::typed::Typed::Wrong => $ctx.r.error($crate::command::WRONGTYPE),
        }
    }};
}
pub(crate) use with_typed;
