using System.Net;
using System.Text.RegularExpressions;
using ProxySelection.Lab;
using ProxySelection.Negotiation;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>Issue 4 acceptance: an MPTCP client (curl under mptcpize, two paths) to a TCP-only nginx through the proxy.</summary>
[TestFixture]
[NonParallelizable]
public sealed partial class ProxyDownloadTests
{
    private const int Size = 100 * 1024 * 1024;
    private static readonly byte[] Key = Convert.FromHexString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

    [TestCase(false)]
    [TestCase(true)]
    public async Task MptcpClientToTcpServer_ProxyHoldsConnectionWithTwoSubflows_100MegabytesArriveIntact(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        // Paced by nginx, the first connection lasts about a second: an unpaced one (16 KiB, or 1 MiB under curl's
        // --limit-rate) ended in 30 ms now and then, before the client's join reached the holder (CI), and its relay line
        // read subflows=1.
        var small = lab.WriteFile("small.bin", ProxyLab.PacedBytesPerSecond * 3 / 2);
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var keyFile = Path.Combine(lab.Directory, "key.hex");
        await File.WriteAllTextAsync(keyFile, Convert.ToHexString(Key) + "\n");
        var proxy = await lab.StartProxyAsync("--key-file", keyFile);
        var clientSide = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyPath1, Path.Combine(lab.Directory, "path1.pcap"), "tcp port 80");
        var serverSide = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "uplink.pcap"), "tcp port 80");

        // First connection: cache miss, probe, intercept; the probe connection is the upstream leg.
        var first = await lab.CurlAsync(ProxyLab.Url(v6, ProxyLab.Paced + "small.bin"), mptcp: true, Path.Combine(lab.Directory, "small.out"));
        Assert.That(first.ExitCode, Is.Zero, first.StdErr);
        Assert.That(ProxyLab.Sha256Of(Path.Combine(lab.Directory, "small.out")), Is.EqualTo(small));
        var (toClient, toServer) = await Captures.StopBothAsync(clientSide, serverSide);
        // Why, if not: a probe answered after its deadline releases the SYN to the TCP-only server (no MP_CAPABLE back).
        string decided = string.Join('\n', ProxyLab.Lines(proxy, "syn ").Concat(ProxyLab.Lines(proxy, "probe ")));
        AssertSignal(Captures.Segments(toClient, Captures.IsSynAck), SignalKind.Claim, synAck: true, decided);
        AssertSignal(Captures.Segments(toServer, Captures.IsSyn), SignalKind.Probe, synAck: false, decided);

        // Second connection: the cache says TCP-only, intercepted at once, the relay connects upstream itself.
        var output = Path.Combine(lab.Directory, "download.bin");
        var curl = await lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(120));

        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        TestContext.Progress.WriteLine($"curl 100 MB (v6={v6}): {curl.StdOut}");
        Assert.That(curl.StdOut, Does.StartWith($"200 {Size} "));
        Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        var relays = await RelayLinesAsync(proxy, 2);
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);
        var decisions = ProxyLab.Lines(proxy, "syn ").Where(l => l.Contains("MpCapable", StringComparison.Ordinal)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(decisions, Has.Count.EqualTo(2));
            Assert.That(decisions[0], Does.EndWith("HoldAndProbe (CacheMiss)"));
            Assert.That(decisions[1], Does.EndWith("Intercept (ServerTcpOnly)"));
            Assert.That(relays, Has.All.Contains("Completed"));
            Assert.That(relays.Select(r => SubflowsRegex().Match(r).Groups[1].Value), Is.EqualTo(new[] { "2", "2" }),
                $"both connections: two subflows on the relay's client leg; relay lines:\n{string.Join('\n', relays)}\nsubflow lines:\n{string.Join('\n', ProxyLab.Lines(proxy, "join"))}");
            Assert.That(ProxyLab.Counter(proxy, "probes"), Is.EqualTo(1));
            Assert.That(ProxyLab.Counter(proxy, "probes_adopted"), Is.EqualTo(1), "the probe became the first connection's upstream leg");
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.EqualTo(2));
            Assert.That(ProxyLab.Counter(proxy, "joins_intercepted"), Is.EqualTo(2), "each connection's second subflow");
            Assert.That(ProxyLab.Counter(proxy, "claims_added"), Is.EqualTo(2));
            Assert.That(ProxyLab.Counter(proxy, "hook_failures"), Is.Zero);
        });
    }

    /// <summary>Every MP_CAPABLE segment of the kind given carries an MP_PROXY of <paramref name="kind"/> that verifies under the key.</summary>
    private static void AssertSignal(IReadOnlyList<CapturedSegment> segments, SignalKind kind, bool synAck, string decided)
    {
        var ring = new MpProxyKeyRing(1, Key);
        var capable = segments.Where(s => HasMpCapable(s.Bytes)).ToList();
        Assert.That(capable, Has.Count.EqualTo(1), $"one MP_CAPABLE {(synAck ? "SYN/ACK" : "SYN")} of {segments.Count} captured; the proxy's decisions:\n{decided}");
        var s = capable[0];
        Assert.That(TcpHeader.TryParse(s.Bytes, out var tcp), Is.EqualTo(WireError.None));
        var source = IPAddress.Parse(s.Source).GetAddressBytes();
        var destination = IPAddress.Parse(s.Destination).GetAddressBytes();
        var flow = synAck
            ? MpProxyFlow.ForSyn(destination, source, tcp.DestinationPort, tcp.SourcePort, tcp.AcknowledgmentNumber - 1).WithSynAck(tcp.SequenceNumber)
            : MpProxyFlow.ForSyn(source, destination, tcp.SourcePort, tcp.DestinationPort, tcp.SequenceNumber);
        var signal = SignalCodec.Read(tcp.Options, ring, flow, out var check);
        Assert.That(check, Is.EqualTo(SignalCheck.Verified), $"MP_PROXY on {s.Source} -> {s.Destination}");
        Assert.That(signal!.Value.Kind, Is.EqualTo(kind));
        Assert.That(signal.Value.ProxyId, Is.EqualTo(1));
        Assert.That(TcpOptionReader.Validate(tcp.Options, out _), Is.EqualTo(WireError.None), "the option area stays well formed");
        Assert.That(tcp.Options.Length, Is.LessThanOrEqualTo(TcpHeader.MaxOptionsLength));
    }

    private static bool HasMpCapable(byte[] segment)
    {
        if (TcpHeader.TryParse(segment, out var tcp) != WireError.None)
        {
            return false;
        }

        var reader = new TcpOptionReader(tcp.Options);
        foreach (var option in reader)
        {
            if (option.Kind == TcpOptionKind.Mptcp && option.Length >= 3 && (tcp.Options[option.Offset + 2] >> 4) == 0)
            {
                return true;
            }
        }

        return false;
    }

    private static async Task<IReadOnlyList<string>> RelayLinesAsync(LabProcess proxy, int count)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (ProxyLab.Lines(proxy, "relay ").Count < count && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        return ProxyLab.Lines(proxy, "relay ");
    }

    [GeneratedRegex(@"subflows=(\d+)")]
    private static partial Regex SubflowsRegex();
}
