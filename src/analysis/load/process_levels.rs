//! A trial's levels per process of its worker's tree. Most trees are one process in most
//! trials, and that process's levels are then exactly the tree's: they are kept once, as the
//! tree's, and the process is named (a second copy cost 224 bytes per trial, and a million
//! trials are held at once: issue 35). Whoever reads a process's levels passes the tree's.

use super::levels::Levels;
use crate::few::Few;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessLevels {
    /// The tree's only process in this trial: its levels are the tree's.
    sole: Option<i32>,
    /// Each process's own levels, where they are not the tree's.
    own: Few<i32, Levels>,
}

impl ProcessLevels {
    /// From each process's own levels: one process whose levels are the tree's is kept as
    /// the tree's.
    pub fn from_own(own: Few<i32, Levels>, tree: Option<&Levels>) -> Self {
        let mut levels = Self { sole: None, own };
        levels.fold_into(tree);
        levels
    }

    /// `pid`'s levels in this trial, given the trial's tree levels.
    pub fn get<'a>(&'a self, pid: i32, tree: Option<&'a Levels>) -> Option<&'a Levels> {
        match self.sole {
            Some(sole) if sole == pid => tree,
            _ => self.own.get(&pid),
        }
    }

    /// Every process's levels, by pid, given the trial's tree levels.
    pub fn iter<'a>(&'a self, tree: Option<&'a Levels>) -> impl Iterator<Item = (i32, &'a Levels)> {
        let sole = self.sole.zip(tree);
        let own = self.own.iter().map(|(pid, levels)| (*pid, levels));
        sole.into_iter().chain(own)
    }

    pub fn len(&self) -> usize {
        self.own.len() + usize::from(self.sole.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A process's window in this trial ended with these levels; `tree` is the trial's tree
    /// levels so far.
    pub fn place(&mut self, pid: i32, levels: Levels, tree: Option<&Levels>) {
        self.unfold(tree);
        self.own.insert(pid, levels);
        self.fold_into(tree);
    }

    /// The trial's tree levels change from `old` to `new`: a process kept as the tree's keeps
    /// the levels it had.
    pub fn tree_changes(&mut self, old: Option<&Levels>, new: &Levels) {
        if old != Some(new) {
            self.unfold(old);
        }
        self.fold_into(Some(new));
    }

    /// The process kept as the tree's gets its levels back, as its own.
    fn unfold(&mut self, tree: Option<&Levels>) {
        if let (Some(sole), Some(tree)) = (self.sole.take(), tree) {
            self.own.insert(sole, tree.clone());
        }
    }

    /// One process whose levels are the tree's is kept as the tree's.
    fn fold_into(&mut self, tree: Option<&Levels>) {
        let Some(tree) = tree else { return };
        if self.sole.is_some() || self.own.len() != 1 {
            return;
        }
        let sole = self.own.iter().next().filter(|(_, l)| *l == tree);
        if let Some((pid, _)) = sole {
            self.sole = Some(*pid);
            self.own = Few::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::kind::Kind;
    use crate::analysis::measures::LevelTriple;

    fn levels(retained: f64) -> Levels {
        let mut l = Levels::default();
        l.insert(
            Kind::Anon,
            LevelTriple {
                baseline: Some(1.0),
                peak: Some(retained + 1.0),
                retained: Some(retained),
            },
        );
        l
    }

    #[test]
    fn one_process_with_the_trees_levels_is_kept_once_and_read_as_before() {
        let tree = levels(10.0);
        // Process first, then the tree (either order happens: windows end on one row).
        let mut p = ProcessLevels::default();
        p.place(7, levels(10.0), None);
        assert_eq!(p.sole, None);
        p.tree_changes(None, &tree);
        assert_eq!((p.sole, p.own.len()), (Some(7), 0), "kept once");
        assert_eq!(p.get(7, Some(&tree)), Some(&tree));
        assert_eq!(p.get(8, Some(&tree)), None);
        // A second process: the first gets its own levels back.
        p.place(8, levels(3.0), Some(&tree));
        assert_eq!(p.sole, None);
        assert_eq!(p.get(7, Some(&tree)), Some(&levels(10.0)));
        assert_eq!(p.get(8, Some(&tree)), Some(&levels(3.0)));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn a_process_whose_levels_differ_from_the_trees_keeps_its_own() {
        let tree = levels(10.0);
        let mut p = ProcessLevels::default();
        p.place(7, levels(9.0), Some(&tree));
        assert_eq!(p.sole, None);
        assert_eq!(p.get(7, Some(&tree)), Some(&levels(9.0)));
        // The tree's levels replaced: a process kept as the tree's keeps the old ones.
        let mut q = ProcessLevels::from_own([(7, tree.clone())].into_iter().collect(), Some(&tree));
        assert_eq!(q.sole, Some(7));
        q.tree_changes(Some(&tree), &levels(11.0));
        assert_eq!(q.get(7, Some(&levels(11.0))), Some(&tree));
        assert_eq!(q.iter(Some(&levels(11.0))).count(), 1);
    }
}
