using System.Globalization;
using System.Net;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// Issue 12, hostile suite: while legitimate downloads make the proxy probe fresh destinations (IPv4: TCP-only, IPv6:
/// MPTCP), injectors spray SYN/ACKs "from" those destinations to the proxy's probe address — with MP_CAPABLE (would make a
/// TCP-only server look MPTCP), without it (the reverse), with a forged MP_PROXY Defer (would make another proxy look
/// responsible) — on random ports of the probe's ephemeral range, with acknowledgment numbers that do not acknowledge the
/// probe's ISN + 1. Spec §7.5.2 and §7.6: such a segment is not an answer, so 0 cache entries may differ from the truth.
/// </summary>
[TestFixture]
[NonParallelizable]
[Category("Hostile")]
public sealed class InjectedSynAckTests
{
    private const int Destinations = 16;

    [Test]
    public async Task BlindSynAckSpray_WithAndWithoutMpCapableAndForgedDefer_PoisonsNoCacheEntry()
    {
        const double Rate = 1_500; // per injector; four run together
        await using var lab = await HostileLab.StartAsync();
        var duration = HostileLab.FloodSeconds;
        var limits = new GeneratorLimits(Rate, (long)(Rate * duration.TotalSeconds), duration + TimeSpan.FromSeconds(5));
        var forgedDefer = HostileOptions.MpProxy(MpProxyOption.Short(MpProxyMessage.Defer, 15, 9, tag: 0xBEEF));
        // The destinations the downloads probe: 198.18.128.1..16 and 2001:db8:80::1..16 (the injectors' /27 and /123).
        static HostileSegment SynAck(IPAddress from, int prefix, string to, params byte[][] options) => new()
        {
            Source = Offset(from, 1),
            SourcePrefixLength = prefix,
            Destination = IPAddress.Parse(to),
            SourcePort = 80,
            DestinationPortRange = (32768, 60999),
            Flags = TcpFlags.Syn | TcpFlags.Ack,
            Options = HostileOptions.Concat([HostileOptions.Mss(), .. options]),
        };

        var injectors = new[]
        {
            SynAck(HostileLab.ManyDestinations, 27, TwoPathTopology.ProxyUpV4, HostileOptions.MpCapableSynAck(0x1111)),
            SynAck(HostileLab.ManyDestinations, 27, TwoPathTopology.ProxyUpV4, forgedDefer),
            SynAck(HostileLab.ManyDestinationsV6, 123, TwoPathTopology.ProxyUpV6),
            SynAck(HostileLab.ManyDestinationsV6, 123, TwoPathTopology.ProxyUpV6, HostileOptions.MpCapableSynAck(0x2222), forgedDefer),
        };
        var floods = injectors.Select((segment, i) => SegmentGenerator.RunAsync(lab.Proxy.Topology.Server, segment, limits, seed: 10 + i)).ToList();
        var all = Task.WhenAll(floods);
        var downloads = await lab.DownloadLoopAsync(all, minimum: 2 * Destinations, duration + TimeSpan.FromSeconds(120), Url);
        var sent = await all.WaitAsync(TimeSpan.FromSeconds(60));
        var cache = await lab.CacheAsync();

        var truth = Truth();
        var present = truth.Where(t => cache.ContainsKey(t.Key)).ToList();
        var poisoned = present.Where(t => cache[t.Key] != t.State && cache[t.Key] != "Unresolved").Select(t => $"{t.Key} {cache[t.Key]} (truth {t.State})").ToList();
        var strangers = cache.Where(e => e.Value == "ProxyBeyond").Select(e => e.Key).ToList();

        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"injected SYN/ACKs: {string.Join("; ", sent.Select(s => s.ToString()))}; legit {downloads}; cache entries checked {present.Count} of {truth.Count}, " +
            $"poisoned {poisoned.Count} [{string.Join(", ", poisoned)}], ProxyBeyond {strangers.Count}; load {HostileLab.Load()}"));
        Assert.Multiple(() =>
        {
            Assert.That(present.Count(t => cache[t.Key] == t.State), Is.GreaterThanOrEqualTo(truth.Count / 2),
                "most probed destinations have their true state (else the test says nothing): " + string.Join(", ", cache.Select(e => $"{e.Key}={e.Value}")));
            Assert.That(poisoned, Is.Empty, "cache entries that differ from the truth");
            Assert.That(strangers, Is.Empty, "no forged Defer made a ProxyBeyond entry");
            Assert.That(downloads.SuccessRate, Is.GreaterThanOrEqualTo(0.99), downloads.ToString());
            Assert.That(sent.Sum(s => s.Sent), Is.GreaterThanOrEqualTo(0.9 * 4 * Rate * duration.TotalSeconds), "the injectors kept their rate");
        });
    }

    [Test]
    public async Task OnPathForgedSynAcksOnTheProbesExactFlowWithAWrongAck_PoisonNoCacheEntry()
    {
        await using var lab = await HostileLab.StartAsync();
        var forgedDefer = HostileOptions.MpProxy(MpProxyOption.Short(MpProxyMessage.Defer, 15, 9, tag: 0xBEEF));
        // IPv4 servers are TCP-only: the forgery says MPTCP (and Defer); IPv6 servers speak MPTCP: it says TCP-only.
        await using var forger = await SynAckForger.StartAsync(lab.Proxy.Topology.Server, v6 => v6
            ? HostileOptions.Concat(HostileOptions.Mss())
            : HostileOptions.Concat(HostileOptions.Mss(), HostileOptions.MpCapableSynAck(0x3333), forgedDefer));
        var downloads = await lab.DownloadLoopAsync(Task.CompletedTask, 2 * Destinations, TimeSpan.FromSeconds(120), Url);
        var cache = await lab.CacheAsync();
        var truth = Truth();
        // Poisoned: a fact other than the truth. Unresolved (the forger's segment made the prober's stack reset the
        // server's half-open connection, so the probe failed) is no fact: the proxy passes and probes again later.
        var poisoned = truth.Where(t => cache.GetValueOrDefault(t.Key) is { } state && state != t.State && state != "Unresolved")
            .Select(t => $"{t.Key} {cache[t.Key]} (truth {t.State})").ToList();
        var unresolved = truth.Count(t => cache.GetValueOrDefault(t.Key) is null or "Unresolved");

        TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"on-path forged SYN/ACKs (ack = ISN + 2): {forger.Forged} forged; legit {downloads}; cache entries poisoned {poisoned.Count} of {truth.Count} [{string.Join(", ", poisoned)}], unresolved or absent {unresolved}; load {HostileLab.Load()}"));
        Assert.Multiple(() =>
        {
            Assert.That(forger.Forged, Is.GreaterThanOrEqualTo(2 * Destinations), "every probe met a forgery first");
            Assert.That(truth.Count - unresolved, Is.GreaterThanOrEqualTo(truth.Count / 2), "most probes still found the truth (else the test says nothing)");
            Assert.That(poisoned, Is.Empty, "cache entries that differ from the truth");
            Assert.That(downloads.SuccessRate, Is.GreaterThanOrEqualTo(0.99), downloads.ToString());
        });
    }

    /// <summary>Download <paramref name="i"/>: alternately IPv4 (TCP-only) and IPv6 (MPTCP), each time the next of the <see cref="Destinations"/> of its family.</summary>
    private static string Url(int i) => i % 2 == 0
        ? $"http://{Offset(HostileLab.ManyDestinations, 1 + (i / 2 % Destinations))}/file.bin"
        : $"http://[{Offset(HostileLab.ManyDestinationsV6, 1 + (i / 2 % Destinations))}]/file.bin";

    /// <summary>What the cache must say of each destination the downloads probe.</summary>
    private static List<(string Key, string State)> Truth() => [.. Enumerable.Range(1, Destinations).SelectMany(n => new[]
    {
        (Key: $"{Offset(HostileLab.ManyDestinations, n)}:80", State: "TcpOnly"),
        (Key: $"[{Offset(HostileLab.ManyDestinationsV6, n)}]:80", State: "MptcpCapable"),
    })];

    /// <summary>The address <paramref name="n"/> after <paramref name="prefix"/> (last byte; n below 256).</summary>
    private static IPAddress Offset(IPAddress prefix, int n)
    {
        var bytes = prefix.GetAddressBytes();
        bytes[^1] = (byte)(bytes[^1] + n);
        return new IPAddress(bytes);
    }
}
