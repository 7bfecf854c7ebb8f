using System.Globalization;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.LabTool.Interop;
using ProxySelection.Negotiation;

namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>
/// Issue 14's chains of tiers on the real kernel: MPTCP clients → a BIRD router (ECMP by L4 hash over a resilient group)
/// → a tier of 3 <c>proxysel run --role downgrade</c> instances in instance mode → one more downgrade proxy (the second
/// tier, in instance mode too) → TCP-only nginx, every proxy with the same operator key. The selection between the
/// tiers is that of a chain of single proxies (the chain simulator's holder), each connection is held once, and every
/// MP_JOIN reaches its holder (across the first tier when the second holds). Run by the interop tool's
/// <see cref="TierChainRunner"/> (the <c>mptcp-tcp-tier3+1-*</c> cells); M is <c>PSEL_SCALEOUT_CLIENTS</c> (default 30).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class TierChainTests
{
    private const int Instances = 3;
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(5);

    private static int Clients =>
        int.TryParse(Environment.GetEnvironmentVariable("PSEL_SCALEOUT_CLIENTS"), CultureInfo.InvariantCulture, out var m) && m > 0 ? m : 30;

    [Test]
    public async Task ExplicitFirst_EachConnectionIsHeldByOneInstanceOfTheFirstTier_ItsJoinLandsThere_AndTheSecondTierPassesIt()
    {
        var first = new InteropProxy(SignalingMode.Explicit, SelectionPolicy.First);
        var (run, expected) = await RunAsync(first, first);
        var tier = Enumerable.Range(0, Instances).ToList();
        int second = Instances;
        double even = (double)Clients / Instances;
        // ±25 % of even, or 3.5 standard deviations of the binomial share when M is too small for 25 % to be a fair bound.
        double tolerance = Math.Max(0.25 * even, 3.5 * Math.Sqrt(Clients * (1.0 / Instances) * (1 - (1.0 / Instances))));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(expected.Holder, Is.EqualTo("P1"), "the spec's selection (explicit, first): the proxy nearest the client");
            AssertWholeAndJoined(run);
            Assert.That(run.Downloads.Select(d => d.Holders.Count == 1 && d.Holders[0].StartsWith("inst", StringComparison.Ordinal)), Is.All.True,
                "each connection held by exactly one proxy, an instance of the first tier: " + Holders(run));
            Assert.That(run.Held[second], Is.Zero, "the second tier accepted none of the connections");
            Assert.That(run.Counters[second]["MPTcpExtMPCapableSYNRX"], Is.Zero, "no MPTCP handshake reached the second tier");
            Assert.That(run.Counters[second]["MPTcpExtMPJoinSynRx"], Is.Zero, "no join reached the second tier");
            Assert.That(tier.Select(i => run.Counters[i]["MPTcpExtMPCapableSYNRX"]), Is.EqualTo(tier.Select(i => (long)run.Held[i])), "the kernel agrees with the events on who holds");
            Assert.That(tier.Select(i => run.Counters[i]["MPTcpExtMPJoinSynRx"]), Is.EqualTo(tier.Select(i => (long)run.Held[i])), "each instance received exactly the joins of the connections it holds");
            Assert.That(tier.Select(i => Math.Abs(run.Held[i] - even)), Is.All.LessThanOrEqualTo(tolerance), "spread over the first tier");
        }
    }

    [Test]
    public async Task ImplicitFirstTier_TheSecondTierHoldsEveryConnection_AndItsJoinsCrossTheFirstTierToIt()
    {
        var (run, expected) = await RunAsync(new InteropProxy(SignalingMode.Implicit, SelectionPolicy.First), new InteropProxy(SignalingMode.Explicit, SelectionPolicy.First));
        int second = Instances;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(expected.Holder, Is.EqualTo("P2"), "the spec's selection: an implicit proxy defers to the explicit one behind it");
            AssertWholeAndJoined(run);
            Assert.That(run.Downloads.Select(d => d.Holders.Count == 1 && d.Holders[0] == TierChainRun.SecondTierName), Is.All.True,
                "each connection held by exactly one proxy, the second tier: " + Holders(run));
            Assert.That(run.Held.Take(Instances), Is.All.Zero, "the first tier accepted none of the connections");
            Assert.That(run.Counters.Take(Instances).Select(c => c["MPTcpExtMPJoinSynRx"]), Is.All.Zero, "no join stopped at the first tier");
            Assert.That(run.Counters[second]["MPTcpExtMPJoinSynRx"], Is.EqualTo(Clients), "every join crossed the first tier to the holder's own address");
        }
    }

    private static async Task<(TierChainRun Run, InteropExpectation Expected)> RunAsync(InteropProxy tier, InteropProxy second)
    {
        var cell = new InteropCell(true, false, [tier, second], Tier: Instances);
        var runner = new TierChainRunner(new InteropOptions([ProxyBinary.At(ProxyLab.ProxyselDll)]));
        using var bounded = new CancellationTokenSource(Limit);
        // 1.5 MiB at 1 MB/s: each download lasts well past its join.
        var run = await runner.RunAsync(new TierChainSpec(Instances, tier, second, Clients, FileBytes: 1536 * 1024, Rate: "1M"), bounded.Token).WaitAsync(Limit);
        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{cell.Name} M={Clients} in {run.Elapsed.TotalSeconds:F1} s (warm-up {run.WarmUpRounds} rounds); held [{string.Join(' ', run.Held)}] " +
            $"joins [{string.Join(' ', run.Counters.Select(c => c["MPTcpExtMPJoinSynRx"]))}] for [{string.Join(' ', run.Proxies)}]; client: {Format(run.Client)}"));
        for (int i = 0; i < run.Proxies.Count; i++)
        {
            TestContext.Progress.WriteLine($"{run.Proxies[i]}: {Format(run.Counters[i])}; {run.Decisions?[i]}");
        }

        return (run, InteropExpectation.For(cell));
    }

    /// <summary>Every download whole (SHA-256), every connection MPTCP end to end with its holder's ADD_ADDR and its join, no join refused anywhere.</summary>
    private static void AssertWholeAndJoined(TierChainRun run)
    {
        Assert.That(run.Downloads, Has.Count.EqualTo(Clients));
        Assert.That(run.Downloads.Select(d => d.ExitCode), Is.All.Zero, string.Join("\n", run.Downloads.Where(d => d.ExitCode != 0).Select(d => d.Error)));
        Assert.That(run.Downloads.Select(d => d.Intact), Is.All.True, "every download has the served file's SHA-256");
        Assert.That(run.Client["MPTcpExtMPCapableSYNACKRX"], Is.EqualTo(Clients), "every connection is MPTCP at the client");
        Assert.That(run.Client["MPTcpExtAddAddr"], Is.EqualTo(Clients), "every connection got its holder's ADD_ADDR");
        Assert.That(run.Client["MPTcpExtMPJoinSynAckRx"], Is.EqualTo(Clients), "every connection got its second subflow");
        foreach (var name in new[] { "MPTcpExtMPJoinNoTokenFound", "MPTcpExtMPJoinAckHMacFailure", "MPTcpExtMismatchPortSynRx" })
        {
            Assert.That(run.Counters.Select(c => c[name]), Is.All.Zero, name);
        }
    }

    private static string Holders(TierChainRun run) =>
        string.Join(", ", run.Downloads.Select(d => string.Create(CultureInfo.InvariantCulture, $"{d.ClientPort}:[{string.Join(' ', d.Holders)}]")));

    private static string Format(IReadOnlyDictionary<string, long> counters) =>
        string.Join(' ', counters.Where(kv => kv.Value != 0).Select(kv => $"{kv.Key.Replace("MPTcpExt", "", StringComparison.Ordinal)}={kv.Value}"));
}
