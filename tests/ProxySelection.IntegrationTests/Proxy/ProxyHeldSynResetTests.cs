using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using ProxySelection.Engine.Flows;
using ProxySelection.Lab;
using ProxySelection.Relay;
using ProxySelection.Wire;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Spec §7.2 on the real kernel: a RST from the client for the flow of a held SYN ends that hold (the SYN never reaches
/// the server, the RST does, untouched) while a second SYN that joined the same probe is still released.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyHeldSynResetTests
{
    /// <param name="kernelPath">The daemon's defaults: the RST queue rule is gated by a BPF match the engine opens while a
    /// SYN is held (<see cref="Interception.Bpf.RstGateProgram"/>).</param>
    [TestCase(false)]
    [TestCase(true)]
    public async Task RstDuringAHold_DiscardsThatSyn_ForwardsTheRst_TheOtherHeldSynIsReleased(bool kernelPath)
    {
        await using var lab = await ProxyLab.StartAsync();
        await lab.StartNginxAsync();
        // The probe's SYN/ACK comes late: both SYNs stay held for the whole probe timeout.
        await using var slow = await SynAckDelay.StartAsync(lab.Topology.Server, TimeSpan.FromMilliseconds(600));
        var proxy = await lab.StartProxyAsync(["--set", "Proxy:ProbeTimeout=400ms", .. kernelPath ? ProxyLab.KernelPath : []]);
        var uplink = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "uplink.pcap"), "tcp port 80");

        var server = new IPEndPoint(IPAddress.Parse(TwoPathTopology.ServerV4), 80);
        var client = IPAddress.Parse(TwoPathTopology.ClientPath1V4);
        var (abandoned, kept, raw) = await lab.Topology.Client.RunInNamespaceAsync(() =>
        {
            var a = SocketFactory.CreateMptcp(AddressFamily.InterNetwork);
            var b = SocketFactory.CreateMptcp(AddressFamily.InterNetwork);
            a.Bind(new IPEndPoint(client, 0));
            b.Bind(new IPEndPoint(client, 0));
            // IPPROTO_RAW: the test writes the whole IP packet.
            var r = new Socket(AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Raw);
            return (a, b, r);
        });
        using var _a = abandoned;
        using var _b = kept;
        using var _r = raw;
        ushort abandonedPort = (ushort)((IPEndPoint)abandoned.LocalEndPoint!).Port;
        ushort keptPort = (ushort)((IPEndPoint)kept.LocalEndPoint!).Port;

        using var cts = new CancellationTokenSource(ProxyLab.Timeout);
        var abandonedConnect = abandoned.ConnectAsync(server, cts.Token).AsTask();
        var keptConnect = kept.ConnectAsync(server, cts.Token).AsTask();
        await WaitUntilAsync(() => ProxyLab.Events(proxy, "syn").Count(e => e.Verdict == "HoldAndProbe") == 2, "both SYNs held");

        raw.SendTo(Rst(client, abandonedPort, server), new IPEndPoint(server.Address, 0));
        await WaitUntilAsync(() => ProxyLab.Events(proxy, "expired").Any(e => e.Reason == FlowCloseReasons.ResetBySender), "the hold ended by the RST");
        // The client gives up: closing a connecting socket sends nothing, so no retransmission of its SYN follows.
        abandoned.Close();

        await keptConnect.WaitAsync(ProxyLab.Timeout);
        await Task.WhenAny(abandonedConnect).WaitAsync(ProxyLab.Timeout);
        var segments = Captures.Segments(await uplink.StopAsync(TimeSpan.FromSeconds(1)));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(string.Join('\n', ProxyLab.Events(proxy).Select(ProxySelection.Engine.Diagnostics.ProxyEventText.Format)));

        var fromAbandoned = segments.Where(s => s.Source == TwoPathTopology.ClientPath1V4 && s.SourcePort == abandonedPort).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(fromAbandoned.Where(Captures.IsSyn), Is.Empty, "the discarded SYN never reached the server");
            // The injected RST is the one with sequence number 0 and window 0 (the client's own close may add another).
            Assert.That(fromAbandoned.Where(s => (s.Flags & TcpFlags.Rst) != 0 && BinaryPrimitives.ReadUInt32BigEndian(s.Bytes.AsSpan(4)) == 0
                && BinaryPrimitives.ReadUInt16BigEndian(s.Bytes.AsSpan(14)) == 0).ToList(), Has.Count.EqualTo(1), "the RST went on, untouched");
            Assert.That(segments.Where(s => s.SourcePort == keptPort && s.IsSyn), Is.Not.Empty, "the other SYN was released");
            Assert.That(ProxyLab.Events(proxy, "hold").Single().Outcome, Is.EqualTo("Release"));
            Assert.That(ProxyLab.Counter(proxy, "holds_reset"), Is.EqualTo(1));
            Assert.That(ProxyLab.Counter(proxy, "probes"), Is.EqualTo(1), "one probe, which both SYNs joined");
        });
    }

    /// <summary>
    /// With the gate (the daemon's defaults) and no SYN held, a RST toward the port never reaches the queue: the gated
    /// rule's counter stays at zero, and the RST reaches the server untouched.
    /// </summary>
    [Test]
    public async Task RstWhileNothingIsHeld_SkipsTheQueue_AndGoesOnUntouched()
    {
        await using var lab = await ProxyLab.StartAsync();
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync(ProxyLab.KernelPath);
        var uplink = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "uplink.pcap"), "tcp port 80");
        var server = new IPEndPoint(IPAddress.Parse(TwoPathTopology.ServerV4), 80);
        var client = IPAddress.Parse(TwoPathTopology.ClientPath1V4);
        using var raw = await lab.Topology.Client.RunInNamespaceAsync(() => new Socket(AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Raw));
        raw.SendTo(Rst(client, 40123, server), new IPEndPoint(server.Address, 0));

        await WaitUntilAsync(() => RstRuleCounter(lab).Result.Total >= 1, "the RST crossed the raw table");
        // Read once the capture has the RST beyond the proxy: the counter then includes it whatever it matched.
        var segments = Captures.Segments(await uplink.StopAsync(TimeSpan.FromSeconds(1)));
        var (gated, _) = await RstRuleCounter(lab);
        await proxy.StopAsync(ProxyLab.Timeout);
        Assert.Multiple(() =>
        {
            Assert.That(gated, Is.Zero, "the gated RST rule queued nothing");
            Assert.That(segments.Where(s => s.SourcePort == 40123 && (s.Flags & TcpFlags.Rst) != 0).ToList(), Has.Count.EqualTo(1), "the RST went on");
        });
    }

    /// <summary>The gated RST queue rule's packet counter, and the raw chain's packets in all (from its jump rule).</summary>
    private static async Task<(long Gated, long Total)> RstRuleCounter(ProxyLab lab)
    {
        var saved = await lab.Topology.Proxy.RunAsync("iptables-save", ["-c", "-t", "raw"], ProxyLab.Timeout);
        long Count(Func<string, bool> match) => saved.StdOut.Split('\n').Where(match)
            .Select(l => long.Parse(l[1..l.IndexOf(':', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture)).Sum();
        long gated = Count(l => l.Contains("--tcp-flags SYN,RST RST", StringComparison.Ordinal) && l.Contains("object-pinned", StringComparison.Ordinal));
        long total = Count(l => l.Contains("-A PREROUTING", StringComparison.Ordinal) && l.Contains("-j PSEL_QUEUE", StringComparison.Ordinal));
        Assert.That(saved.StdOut, Does.Contain("--tcp-flags SYN,RST RST").And.Contain("rst/proxysel-"), "the RST rule is gated");
        return (gated, total);
    }

    /// <summary>An IPv4 RST (no ACK) from <paramref name="client"/>:<paramref name="port"/> to <paramref name="server"/>, checksums filled.</summary>
    private static byte[] Rst(IPAddress client, ushort port, IPEndPoint server)
    {
        var packet = new byte[40];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), 40);
        packet[8] = 64;
        packet[9] = 6;
        client.GetAddressBytes().CopyTo(packet, 12);
        server.Address.GetAddressBytes().CopyTo(packet, 16);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), port);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), (ushort)server.Port);
        packet[32] = 5 << 4;
        packet[33] = (byte)TcpFlags.Rst;
        Assert.That(InternetChecksum.TryFillChecksums(packet), Is.EqualTo(WireError.None));
        return packet;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException(what);
            }

            await Task.Delay(5);
        }
    }
}
