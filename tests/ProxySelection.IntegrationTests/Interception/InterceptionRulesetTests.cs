using System.Text.RegularExpressions;
using ProxySelection.Interception.Rules;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>The ruleset applied and removed in a fresh namespace leaves the kernel's tables as it found them.</summary>
[TestFixture]
public sealed partial class InterceptionRulesetTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Test]
    public async Task ApplyThenRemove_FreshNamespace_TablesRulesAndRoutesExactlyAsBefore()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("rules").WaitAsync(Timeout);
        var rules = NewRuleset(ns);
        var before = await SnapshotAsync(ns).WaitAsync(Timeout);

        await rules.ApplyAsync().WaitAsync(Timeout);
        var applied = await SnapshotAsync(ns).WaitAsync(Timeout);
        await rules.RemoveAsync().WaitAsync(Timeout);
        var after = await SnapshotAsync(ns).WaitAsync(Timeout);

        Assert.That(applied, Is.Not.EqualTo(before));
        Assert.That(after, Is.EqualTo(before));
    }

    [Test]
    public async Task Apply_Installed_HasQueueTproxyEgressAndPolicyRoutingForBothFamilies()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("rules").WaitAsync(Timeout);
        var rules = NewRuleset(ns);

        await rules.ApplyAsync().WaitAsync(Timeout);

        foreach (var (save, ip) in new[] { ("iptables-save", "-4"), ("ip6tables-save", "-6") })
        {
            var saved = await ns.CheckAsync(save, []).WaitAsync(Timeout);
            Assert.That(saved, Does.Contain("-A PREROUTING -j PSELT_QUEUE"));
            Assert.That(saved, Does.Contain("--dports 80,443 -j NFQUEUE --queue-num 7 --queue-bypass"));
            Assert.That(saved, Does.Contain("-A PSELT_TPROXY -p tcp -m mark --mark 0x1/0x1 -j TPROXY --on-port 0"));
            Assert.That(saved, Does.Contain("-A PSELT_TPROXY -p tcp -m socket --transparent -j PSELT_LOCAL"));
            Assert.That(saved, Does.Contain("-A PSELT_LOCAL -j MARK --set-xmark 0x1/0x1\n-A PSELT_LOCAL -j ACCEPT"));
            Assert.That(saved, Does.Contain("-A PSELT_EGRESS -p tcp -m tcp --tcp-flags SYN SYN -m mark --mark 0x2/0x2 -j NFQUEUE --queue-num 8 --queue-bypass"));
            Assert.That(await ns.IpAsync(ip, "rule", "show").WaitAsync(Timeout), Does.Contain("fwmark 0x1/0x1 lookup 100"));
            Assert.That(await ns.IpAsync(ip, "route", "show", "table", "100").WaitAsync(Timeout), Does.Contain("local default"));
        }
    }

    [Test]
    public async Task Cleanup_AfterCrashAndRepeated_IsIdempotentAndRemovesEverything()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("rules").WaitAsync(Timeout);
        var before = await SnapshotAsync(ns).WaitAsync(Timeout);
        await NewRuleset(ns).ApplyAsync().WaitAsync(Timeout);

        // A new instance (as `proxysel cleanup` after a crash would build it from the same options).
        var fresh = NewRuleset(ns);
        await fresh.CleanupAsync().WaitAsync(Timeout);
        var once = await SnapshotAsync(ns).WaitAsync(Timeout);
        await fresh.CleanupAsync().WaitAsync(Timeout);
        await fresh.RemoveAsync().WaitAsync(Timeout);

        Assert.That(once, Is.EqualTo(before));
        Assert.That(await SnapshotAsync(ns).WaitAsync(Timeout), Is.EqualTo(before));
    }

    [Test]
    public async Task ApplyTwice_ThenRemove_NoDuplicatesAndExactlyAsBefore()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("rules").WaitAsync(Timeout);
        var rules = NewRuleset(ns);
        var before = await SnapshotAsync(ns).WaitAsync(Timeout);

        await rules.ApplyAsync().WaitAsync(Timeout);
        var once = await SnapshotAsync(ns).WaitAsync(Timeout);
        await rules.ApplyAsync().WaitAsync(Timeout);
        var twice = await SnapshotAsync(ns).WaitAsync(Timeout);
        await rules.RemoveAsync().WaitAsync(Timeout);

        Assert.That(twice, Is.EqualTo(once));
        Assert.That(await SnapshotAsync(ns).WaitAsync(Timeout), Is.EqualTo(before));
    }

    [Test]
    public async Task Remove_ForeignRulesPresent_LeavesThemUntouched()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("rules").WaitAsync(Timeout);
        await ns.CheckAsync("iptables", ["-t", "mangle", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "MARK", "--set-mark", "0x10"]).WaitAsync(Timeout);
        await ns.CheckAsync("ip6tables", ["-t", "raw", "-N", "OTHER_CHAIN"]).WaitAsync(Timeout);
        await ns.CheckAsync("ip6tables", ["-t", "raw", "-A", "PREROUTING", "-j", "OTHER_CHAIN"]).WaitAsync(Timeout);
        await ns.IpAsync("rule", "add", "pref", "200", "fwmark", "0x10", "lookup", "200").WaitAsync(Timeout);
        var rules = NewRuleset(ns);
        var before = await SnapshotAsync(ns).WaitAsync(Timeout);

        await rules.ApplyAsync().WaitAsync(Timeout);
        await rules.RemoveAsync().WaitAsync(Timeout);

        Assert.That(await SnapshotAsync(ns).WaitAsync(Timeout), Is.EqualTo(before));
    }

    [Test]
    public void Options_InvalidValues_Rejected()
    {
        Assert.That(() => new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [] }), Throws.ArgumentException);
        Assert.That(() => new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], ChainPrefix = "bad-prefix" }), Throws.ArgumentException);
        Assert.That(() => new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], InterceptMask = 0x3, EgressMask = 0x2, EgressMark = 0x2 }),
            Throws.ArgumentException);
        Assert.That(() => new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], InterceptMark = 0x2, InterceptMask = 0x1 }), Throws.ArgumentException);
    }

    private static InterceptionRuleset NewRuleset(NetNamespace ns) => new(
        new InterceptionRulesetOptions { ChainPrefix = "PSELT", Ports = [443, 80], QueueNumber = 7, EgressQueueNumber = 8 },
        new ProcessCommandRunner(ns.Name));

    /// <summary>iptables-save and ip6tables-save (comments dropped, counters zeroed), ip rule and routes of all tables,
    /// both families.</summary>
    private static async Task<string> SnapshotAsync(NetNamespace ns)
    {
        var parts = new List<string>();
        foreach (var save in (string[])["iptables-save", "ip6tables-save"])
        {
            var text = await ns.CheckAsync(save, []).WaitAsync(Timeout);
            parts.Add(CounterRegex().Replace(string.Join('\n', text.Split('\n').Where(l => !l.StartsWith('#'))), "[0:0]"));
        }

        foreach (var family in (string[])["-4", "-6"])
        {
            parts.Add(await ns.IpAsync(family, "rule", "show").WaitAsync(Timeout));
            parts.Add(await ns.IpAsync(family, "route", "show", "table", "all").WaitAsync(Timeout));
        }

        return string.Join("\n--\n", parts);
    }

    [GeneratedRegex(@"\[\d+:\d+\]")]
    private static partial Regex CounterRegex();
}
