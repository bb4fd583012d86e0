"""Synthetic histories the checker must pass and must fail.

Run: cd tests/jepsen && python3 -m unittest -v
"""

import unittest

import checker


def op(f, key, value, inv, cmp, typ="ok", node=1):
    return {"f": f, "key": key, "value": value, "node": node, "inv": inv, "cmp": cmp,
            "type": typ, "error": None}


def w(key, value, inv, cmp, typ="ok"):
    return op("write", key, value, inv, cmp, typ)


def d(key, inv, cmp, typ="ok"):
    return op("delete", key, None, inv, cmp, typ)


def r(key, value, inv, cmp):
    return op("read", key, value, inv, cmp)


def kinds(result):
    return sorted(v["kind"] for v in result["violations"])


class Legal(unittest.TestCase):
    def test_read_of_last_acknowledged_write(self):
        h = [w("k", "a", 0, 1), w("k", "b", 2, 3), r("k", "b", 4, 5)]
        self.assertEqual(kinds(checker.check(h)), [])

    def test_initial_absent(self):
        self.assertEqual(kinds(checker.check([r("k", None, 0, 1)])), [])

    def test_concurrent_write_may_or_may_not_be_seen(self):
        h = [w("k", "a", 0, 1), w("k", "b", 2, 6), r("k", "a", 3, 4), r("k", "b", 3, 4)]
        self.assertEqual(kinds(checker.check(h)), [])

    def test_indeterminate_write_may_appear_any_time_later(self):
        h = [w("k", "a", 0, 1), w("k", "b", 2, 3, "info"), w("k", "c", 4, 5),
             r("k", "b", 10, 11), r("k", "c", 12, 13)]
        self.assertEqual(kinds(checker.check(h)), [])

    def test_read_after_delete_is_absent(self):
        h = [w("k", "a", 0, 1), d("k", 2, 3), r("k", None, 4, 5)]
        self.assertEqual(kinds(checker.check(h)), [])

    def test_write_overlapping_the_read_start(self):
        # b completes after the read begins: a is still legal.
        h = [w("k", "a", 0, 1), w("k", "b", 2, 5), r("k", "a", 4, 6)]
        self.assertEqual(kinds(checker.check(h)), [])

    def test_failed_writes_do_not_supersede(self):
        h = [w("k", "a", 0, 1), w("k", "b", 2, 3, "fail"), r("k", "a", 4, 5)]
        self.assertEqual(kinds(checker.check(h)), [])


class Illegal(unittest.TestCase):
    def test_stale_read(self):
        h = [w("k", "a", 0, 1), w("k", "b", 2, 3), r("k", "a", 4, 5)]
        res = checker.check(h)
        self.assertEqual(kinds(res), ["stale"])
        self.assertEqual(res["violations"][0]["newer"]["value"], "b")

    def test_not_found_after_acknowledged_write(self):
        h = [w("k", "a", 0, 1), r("k", None, 2, 3)]
        self.assertEqual(kinds(checker.check(h)), ["stale"])

    def test_deleted_value_back(self):
        h = [w("k", "a", 0, 1), d("k", 2, 3), r("k", "a", 4, 5)]
        self.assertEqual(kinds(checker.check(h)), ["stale"])

    def test_value_of_a_failed_write_is_impossible(self):
        h = [w("k", "a", 0, 1, "fail"), r("k", "a", 2, 3)]
        self.assertEqual(kinds(checker.check(h)), ["impossible"])

    def test_value_never_written_is_impossible(self):
        self.assertEqual(kinds(checker.check([r("k", "zz", 0, 1)])), ["impossible"])

    def test_value_written_after_the_read_is_impossible(self):
        h = [r("k", "a", 0, 1), w("k", "a", 2, 3)]
        self.assertEqual(kinds(checker.check(h)), ["impossible"])

    def test_final_read_losing_an_acknowledged_write(self):
        h = [w("k", "a", 0, 1), w("k", "b", 2, 3)]
        res = checker.check(h, final_reads=[r("k", "a", 10, 11)])
        self.assertEqual(kinds(res), ["acknowledged write lost"])

    def test_final_read_bringing_a_deleted_key_back(self):
        h = [w("k", "a", 0, 1), d("k", 2, 3)]
        res = checker.check(h, final_reads=[r("k", "a", 10, 11)])
        self.assertEqual(kinds(res), ["deleted key back"])

    def test_keys_are_independent(self):
        h = [w("k", "a", 0, 1), w("j", "b", 2, 3), r("k", "a", 4, 5), r("j", None, 4, 5)]
        res = checker.check(h)
        self.assertEqual(kinds(res), ["stale"])
        self.assertEqual(res["violations"][0]["key"], "j")


class Excuses(unittest.TestCase):
    def test_excused_stale_read_is_not_a_violation(self):
        h = [w("k", "a", 0, 1), w("k", "b", 2, 3), r("k", "a", 4, 5)]
        res = checker.check(h, excuse=lambda read, newer: "2 of 3 owners down")
        self.assertEqual(kinds(res), [])
        self.assertEqual(len(res["excused"]), 1)

    def test_final_reads_are_never_excused(self):
        h = [w("k", "a", 0, 1), w("k", "b", 2, 3)]
        res = checker.check(h, final_reads=[r("k", "a", 10, 11)],
                            excuse=lambda read, newer: "anything")
        self.assertEqual(kinds(res), ["acknowledged write lost"])


class Summaries(unittest.TestCase):
    def test_longest_write_gap(self):
        h = [w("k", "a", 0, 1), w("k", "b", 1, 2), w("k", "c", 2, 9, "info"),
             d("k", 3, 8), r("k", None, 0, 20)]
        gap, start, end = checker.longest_write_gap(h, 0, 10)
        self.assertEqual((gap, start, end), (6, 2, 8))

    def test_op_counts(self):
        h = [w("k", "a", 0, 1), w("k", "b", 1, 2, "info"), r("k", "a", 0, 1)]
        self.assertEqual(checker.op_counts(h), {"write": {"ok": 1, "fail": 0, "info": 1},
                                                "read": {"ok": 1, "fail": 0, "info": 0}})

    def test_convergence(self):
        vals = {"k": {1: ("a", "5"), 2: ("a", "5"), 3: "unread"},
                "j": {1: ("a", "5"), 2: (None, None)}}
        out = checker.convergence(vals, {})
        self.assertEqual([x["key"] for x in out], ["j"])


if __name__ == "__main__":
    unittest.main()
