using System.Net;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;
using ProxySelection.Negotiation;
using ProxySelection.Wire;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// Issue 12, hostile suite: segments that arrive while a SYN is held (spec §7.2) and SYNs that must never be held. The
/// server's SYN/ACKs are delayed 100 ms (<see cref="SynAckDelay"/>) so a hold lasts long enough to send into it.
/// </summary>
[TestFixture]
[NonParallelizable]
[Category("Hostile")]
public sealed class HoldTests
{
    private static readonly TimeSpan ServerDelay = TimeSpan.FromMilliseconds(100);
    private static readonly IPAddress Client = IPAddress.Parse(TwoPathTopology.ClientPath1V4);

    [Test]
    public async Task DuplicateSynDuringAHold_OneSynAckReachesTheClientAndTheCopyIsDropped()
    {
        await using var lab = await HostileLab.StartAsync();
        await using var delay = await SynAckDelay.StartAsync(lab.Proxy.Topology.Server, ServerDelay);
        var syn = Syn(21000, Fresh(1));
        var capture = await CaptureClientAsync(lab, 21000);

        var bytes = syn.ToArray(new Random(1));
        // The copy right behind the original, in one send: the engine takes the ingress queue in order on one thread, so
        // the original's hold exists when the copy is decided, however loaded the host. A copy sent once the test had
        // read the original's event came after the hold's 200 ms deadline at load 50.
        var sent = await SegmentGenerator.SendAsync(lab.Client, [bytes, bytes]);
        var hold = await lab.WaitForEventAsync("hold", e => e.Client == $"{Client}:21000");
        await Task.Delay(TimeSpan.FromSeconds(1));
        var synAcks = CaptureComparison.Segments(await capture.StopAsync()).Where(s => s.IsSynAck && s.DestinationPort == 21000).ToList();
        var syns = lab.Events("syn").Where(e => e.Client == $"{Client}:21000").ToList();

        TestContext.Progress.WriteLine($"duplicate during a hold: syn events {string.Join(", ", syns.Select(e => e.Verdict + "/" + e.Reason))}; hold {hold.Outcome}/{hold.Reason} {hold.Milliseconds:F1} ms; SYN/ACKs to the client {synAcks.Count}");
        Assert.Multiple(() =>
        {
            Assert.That(sent.Sent, Is.EqualTo(2));
            Assert.That(syns.Select(e => e.Verdict), Is.EqualTo(new[] { "HoldAndProbe", "Duplicate" }), "the copy is recognised as one (spec §7.2 rule 2)");
            Assert.That(lab.Events("hold").Count(e => e.Client == $"{Client}:21000"), Is.EqualTo(1), "one hold, for the original");
            Assert.That(synAcks, Has.Count.EqualTo(1), "one SYN/ACK for the 4-tuple reaches the client");
        });
    }

    [Test]
    public async Task RstDuringAHold_EndsTheHoldTheSynIsNeitherInterceptedNorForwarded()
    {
        await using var lab = await HostileLab.StartAsync();
        await using var delay = await SynAckDelay.StartAsync(lab.Proxy.Topology.Server, ServerDelay);
        var syn = Syn(23000, Fresh(2));
        var clientCapture = await CaptureClientAsync(lab, 23000);
        var serverCapture = await lab.Proxy.Topology.Server.StartCaptureAsync(TwoPathTopology.ServerDown,
            Path.Combine(lab.Proxy.Directory, "server-23000.pcap"), "tcp port 23000");

        await SegmentGenerator.SendAsync(lab.Client, [syn.ToArray(new Random(1))]);
        await lab.WaitForEventAsync("syn", e => e.Client == $"{Client}:23000");
        var rst = syn with { Flags = TcpFlags.Rst, Sequence = syn.Sequence + 1, Options = [] };
        await SegmentGenerator.SendAsync(lab.Client, [rst.ToArray(new Random(1))]);
        await Task.Delay(ServerDelay + TimeSpan.FromSeconds(1));
        var synAcks = CaptureComparison.Segments(await clientCapture.StopAsync()).Where(s => s.IsSynAck).ToList();
        var forwarded = CaptureComparison.Segments(await serverCapture.StopAsync()).Where(s => s.IsSyn && !s.IsSynAck).ToList();
        var events = lab.Events().Where(e => e.Client == $"{Client}:23000").Select(e => $"{e.Event} {e.Verdict ?? e.Outcome}/{e.Reason} {e.Milliseconds}").ToList();

        TestContext.Progress.WriteLine($"RST during a hold: events [{string.Join("; ", events)}]; SYN/ACKs to the client {synAcks.Count}; SYNs at the server {forwarded.Count}");
        Assert.Multiple(() =>
        {
            Assert.That(synAcks, Is.Empty, "the held SYN was discarded: nobody answers a connection its client abandoned");
            Assert.That(forwarded, Is.Empty, "the held SYN was not released toward the server either");
            Assert.That(events, Has.None.StartsWith("accepted"));
        });
    }

    [Test]
    public async Task Md5SignedMpCapableSyn_ToACachedTcpOnlyServer_PassesUntouched()
    {
        await using var lab = await HostileLab.StartAsync();
        await lab.PrimeAsync();
        var syn = Syn(22000, HostileLab.Server) with
        {
            Options = HostileOptions.Concat(HostileOptions.Mss(), HostileOptions.MpCapableSyn(), HostileOptions.Md5Signature()),
        };
        var serverCapture = await lab.Proxy.Topology.Server.StartCaptureAsync(TwoPathTopology.ServerDown,
            Path.Combine(lab.Proxy.Directory, "server-22000.pcap"), "tcp port 22000");
        var bytes = syn.ToArray(new Random(1));

        await SegmentGenerator.SendAsync(lab.Client, [bytes]);
        var decided = await lab.WaitForEventAsync("syn", e => e.Client == $"{Client}:22000");
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        var arrived = CaptureComparison.Segments(await serverCapture.StopAsync()).Where(s => s.IsSyn && !s.IsSynAck).ToList();

        TestContext.Progress.WriteLine($"MD5 SYN: {decided.Verdict}/{decided.Reason}; SYNs at the server {arrived.Count}");
        Assert.Multiple(() =>
        {
            Assert.That(decided.Verdict, Is.EqualTo("Pass"), "spec §7.2 rule 1: never intercepted, held or probed");
            Assert.That(decided.Reason, Is.EqualTo(nameof(DecisionReason.TcpAuthOption)), "the negotiator's name for the reason");
            Assert.That(arrived, Has.Count.EqualTo(1), "the SYN reached the server");
            Assert.That(arrived.Select(s => Convert.ToHexString(s.Bytes)), Is.EqualTo(new[] { Convert.ToHexString(bytes, 20, bytes.Length - 20) }),
                "the TCP segment arrived byte for byte as sent");
        });
    }

    private static HostileSegment Syn(ushort port, IPAddress destination) => HostileSegment.MpCapableSyn(Client, destination) with
    {
        SourcePort = port,
        Sequence = 0x20000000u + port,
    };

    /// <summary>A destination the cache has not seen: the SYN is held while the proxy probes it.</summary>
    private static IPAddress Fresh(int n) => IPAddress.Parse($"198.18.130.{n}");

    private static Task<PacketCapture> CaptureClientAsync(HostileLab lab, ushort port) =>
        lab.Client.StartCaptureAsync(TwoPathTopology.ClientPath1, Path.Combine(lab.Proxy.Directory, $"client-{port}.pcap"), $"tcp port {port}");
}
