//! [`Arena`]: a collection's records packed into pages, and the incremental compaction
//! that gives back what deleted and resized records leave.
//!
//! One allocation per record cost a 137-byte record 160 bytes (the allocator's size
//! classes) and its index slot a 16-byte fat pointer. Here records are appended to
//! 64 KiB pages at their exact length ([`super::record`]) and addressed by a [`Loc`]
//! of 8 bytes: page number and offset. A record overwritten by one as long (a value
//! replaced by one of the same size, as most are) is rewritten in place; any other
//! change appends the new record to the *tail* page and leaves the old bytes dead.
//!
//! Dead bytes are given back two ways. A page whose records are all dead is freed at
//! once. Otherwise, once the sealed pages (all but the tail) hold more dead bytes than a
//! quarter of the live ones, a *sweep* starts: the collection's index is walked in
//! position order a few entries per write or removal ([`super::Records`] calls
//! [`Arena::relocate`] for each), and every live record found in a *victim* page is
//! copied to the tail, so the victim empties and is freed. A page is judged the first
//! time the sweep meets one of its records: a victim if it was sealed before the sweep
//! began and an eighth of it or more is dead. Every live record of such a page is
//! reachable from a slot the sweep has not passed yet (records are only appended to
//! the tail, and a page sealed before the sweep has no record newer than it), so a
//! victim is empty when the sweep ends. No operation does more than a step: there is no
//! pause proportional to the number of keys.

use super::record::{Draft, Origins, Rec};
use std::num::NonZeroU32;

/// Bytes in a page.
#[cfg(not(test))]
pub const PAGE: usize = 64 * 1024;
/// Small in tests, so that a few hundred records fill many pages and sweeps run.
#[cfg(test)]
pub const PAGE: usize = 2048;
/// Records this long or longer get a page of their own, of their exact size (a key may
/// be 64 KiB): a page then wastes at most this much at its end.
const OWN_PAGE_FROM: usize = PAGE / 4;

/// Where a record is: its page (numbered from 1, so that `Option<(u64, Loc)>` takes 16
/// bytes) and its offset in the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    page: NonZeroU32,
    offset: u32,
}

impl Loc {
    /// A mark that is no record (a crowded position's index slot, in `mem.rs`).
    pub const NONE: Loc = Loc { page: NonZeroU32::MAX, offset: 0 };

    /// Whether it is [`Loc::NONE`].
    pub fn is_none(self) -> bool {
        self == Loc::NONE
    }

    /// Its page and offset in one number (what [`crate::store::Store::warm`] returns).
    pub fn bits(self) -> u64 {
        u64::from(self.page.get()) << 32 | u64::from(self.offset)
    }

    fn page(self) -> usize {
        self.page.get() as usize - 1
    }
}

#[derive(Debug, Clone)]
struct Page {
    /// The records, one after another; never grows past its capacity.
    bytes: Vec<u8>,
    /// Bytes of dead records.
    dead: usize,
    /// The number of the last sweep started before it stopped being the tail
    /// (`u64::MAX` while it is the tail).
    sealed: u64,
    /// The sweep that last judged it, and whether that sweep is emptying it.
    judged: u64,
    victim: bool,
}

/// A collection's records, in pages (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Arena {
    /// By page number less one; None for a freed page's number.
    pages: Vec<Option<Page>>,
    /// Numbers of freed pages, to reuse.
    free: Vec<usize>,
    /// The page appended to.
    tail: Option<usize>,
    /// Bytes of live records.
    live: usize,
    /// Bytes of dead records in pages other than the tail.
    sealed_dead: usize,
    /// Sweeps started.
    sweeps: u64,
    /// The running sweep's next position, if one is running.
    cursor: Option<u64>,
    /// Bytes of pages the running sweep may still take as victims.
    budget: usize,
    /// A record on its way from a victim to the tail.
    scratch: Vec<u8>,
    /// The origins its records name by code (and the collection's crowded records).
    pub origins: Origins,
}

impl Arena {
    /// The record at `loc`.
    pub fn get(&self, loc: Loc) -> Rec<'_> {
        let page = self.pages[loc.page()].as_ref().expect("a record's page is kept");
        Rec::parse(&page.bytes[loc.offset as usize..], &self.origins)
    }

    /// Clears the mark of the record at `loc` ([`super::record::unmark`]).
    pub fn unmark(&mut self, loc: Loc) {
        let page = self.pages[loc.page()].as_mut().expect("a record's page is kept");
        super::record::unmark(&mut page.bytes[loc.offset as usize..]);
    }

    /// Stores `rec`.
    pub fn put(&mut self, rec: Draft<'_>) -> Loc {
        let (loc, buf) = self.alloc(rec.len());
        rec.fill(buf);
        loc
    }

    /// Stores a copy of record `bytes`.
    pub fn put_bytes(&mut self, bytes: &[u8]) -> Loc {
        let (loc, buf) = self.alloc(bytes.len());
        buf.copy_from_slice(bytes);
        loc
    }

    /// Makes the record at `*loc` `rec`: in place when it is as long, else appended anew
    /// (and `*loc` moved).
    pub fn set(&mut self, loc: &mut Loc, rec: Draft<'_>) {
        let len = rec.len();
        if self.get(*loc).bytes().len() == len {
            let page = self.pages[loc.page()].as_mut().expect("a record's page is kept");
            let at = loc.offset as usize;
            rec.fill(&mut page.bytes[at..at + len]);
        } else {
            self.remove(*loc);
            *loc = self.put(rec);
        }
    }

    /// Room for a record of `len` bytes, counted live.
    fn alloc(&mut self, len: usize) -> (Loc, &mut [u8]) {
        let number = if len >= OWN_PAGE_FROM {
            let mut page = self.new_page(len);
            page.sealed = self.sweeps;
            self.add(page)
        } else {
            match self.tail {
                Some(t) if self.page(t).bytes.len() + len <= PAGE => t,
                _ => {
                    if let Some(t) = self.tail {
                        let sweeps = self.sweeps;
                        let tail = self.page_mut(t);
                        tail.sealed = sweeps;
                        let dead = tail.dead;
                        self.sealed_dead += dead;
                    }
                    let t = self.add(self.new_page(PAGE));
                    self.tail = Some(t);
                    t
                }
            }
        };
        self.live += len;
        let page = self.page_mut(number);
        let offset = page.bytes.len();
        page.bytes.resize(offset + len, 0);
        let loc = Loc {
            page: NonZeroU32::new(number as u32 + 1).expect("page numbers start at 1"),
            offset: offset as u32,
        };
        (loc, &mut page.bytes[offset..])
    }

    fn new_page(&self, capacity: usize) -> Page {
        Page {
            bytes: Vec::with_capacity(capacity),
            dead: 0,
            sealed: u64::MAX,
            judged: 0,
            victim: false,
        }
    }

    /// Keeps `page`, under a freed number if there is one; returns its index.
    fn add(&mut self, page: Page) -> usize {
        match self.free.pop() {
            Some(n) => {
                self.pages[n] = Some(page);
                n
            }
            None => {
                assert!(self.pages.len() < u32::MAX as usize - 1, "too many pages");
                self.pages.push(Some(page));
                self.pages.len() - 1
            }
        }
    }

    fn page(&self, n: usize) -> &Page {
        self.pages[n].as_ref().expect("a record's page is kept")
    }

    fn page_mut(&mut self, n: usize) -> &mut Page {
        self.pages[n].as_mut().expect("a record's page is kept")
    }

    /// Lets go of the record at `loc`: its bytes are dead, and its page is freed if
    /// nothing in it lives.
    pub fn remove(&mut self, loc: Loc) {
        let len = self.get(loc).bytes().len();
        let n = loc.page();
        let is_tail = self.tail == Some(n);
        self.live -= len;
        let page = self.page_mut(n);
        page.dead += len;
        let (dead, used) = (page.dead, page.bytes.len());
        if is_tail {
            if dead == used {
                // An empty tail starts over rather than being freed.
                let page = self.page_mut(n);
                page.bytes.clear();
                page.dead = 0;
            }
            return;
        }
        self.sealed_dead += len;
        if dead == used {
            self.sealed_dead -= dead;
            self.pages[n] = None;
            self.free.push(n);
        }
    }

    /// Starts a sweep if none runs and the sealed pages' dead bytes are more than a
    /// quarter of the live ones (and more than a page), with a budget of victims of an
    /// eighth of the live bytes (their live records are held twice until the sweep
    /// ends); returns the position to go on from, if a sweep runs.
    pub fn sweep_from(&mut self) -> Option<u64> {
        if self.cursor.is_none() && self.sealed_dead > PAGE && self.sealed_dead * 4 > self.live {
            self.sweeps += 1;
            self.cursor = Some(0);
            self.budget = (self.live / 8).max(2 * PAGE);
        }
        self.cursor
    }

    /// Where the sweep goes on from (None: it is over).
    pub fn sweep_to(&mut self, next: Option<u64>) {
        self.cursor = next;
    }

    /// The sweep met the record at `*loc`: moves it to the tail if its page is a victim.
    pub fn relocate(&mut self, loc: &mut Loc) {
        let sweeps = self.sweeps;
        let page = self.pages[loc.page()].as_mut().expect("a record's page is kept");
        if page.judged != sweeps {
            page.judged = sweeps;
            let size = page.bytes.len();
            page.victim = page.sealed < sweeps && page.dead * 8 >= size && self.budget >= size;
            if page.victim {
                self.budget -= size;
            }
        }
        if !page.victim {
            return;
        }
        let mut moving = std::mem::take(&mut self.scratch);
        moving.clear();
        moving.extend_from_slice(self.get(*loc).bytes());
        self.remove(*loc);
        *loc = self.put_bytes(&moving);
        self.scratch = moving;
    }

    /// Sweeps started.
    #[cfg(test)]
    pub fn sweeps(&self) -> u64 {
        self.sweeps
    }

    /// Bytes of live records.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.live
    }

    /// Bytes of dead records, the tail's included.
    #[cfg(test)]
    pub fn dead(&self) -> usize {
        self.pages.iter().flatten().map(|p| p.dead).sum()
    }

    /// Pages held.
    #[cfg(test)]
    pub fn pages(&self) -> usize {
        self.pages.iter().flatten().count()
    }

    /// Checks the counts against the pages.
    #[cfg(test)]
    pub fn check(&self) {
        let pages = self.pages.iter().enumerate().filter_map(|(n, p)| Some((n, p.as_ref()?)));
        let (mut used, mut sealed_dead) = (0, 0);
        for (n, page) in pages {
            assert!(page.dead < page.bytes.len() || self.tail == Some(n), "empty page {n}");
            used += page.bytes.len() - page.dead;
            if self.tail != Some(n) {
                sealed_dead += page.dead;
            }
        }
        assert_eq!((used, sealed_dead), (self.live, self.sealed_dead));
    }
}
