using System.Net;
using System.Net.Sockets;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>The NFQUEUE client in the proxy namespace against real SYNs from the client namespace.</summary>
[TestFixture]
public sealed class NfqueueInterceptionTests
{
    private static readonly TimeSpan Timeout = InterceptionScenario.Timeout;

    [TestCase(false)]
    [TestCase(true)]
    public async Task Accept_QueuedSyn_ConnectionReachesServer(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync();
        var server = await s.ListenAsync(s.Topology.Server, v6);
        var queue = await s.OpenQueueAsync();
        using var stop = new CancellationTokenSource();
        var loop = queue.RunAsync((in NfqueuePacket p) =>
        {
            s.Record(p);
            queue.Accept(p.PacketId);
        }, stop.Token);

        var (_, accepted) = await s.ConnectAndExchangeAsync(server, v6);
        await stop.CancelAsync();
        await loop.WaitAsync(Timeout);

        Assert.That(((IPEndPoint)accepted.RemoteEndPoint!).Address, Is.EqualTo(InterceptionScenario.ClientAddress(v6)));
        var syn = s.Seen.Single();
        Assert.That(syn.Hook, Is.EqualTo(NetfilterHook.PreRouting));
        Assert.That(syn.Family, Is.EqualTo(v6 ? (byte)10 : (byte)2));
        Assert.That(syn.InDevice, Is.Not.Zero);
        Assert.That(TcpTestPackets.IsSyn(syn.Payload), Is.True);
        Assert.That(TcpTestPackets.DestinationPort(syn.Payload), Is.EqualTo(InterceptionScenario.Port));
        Assert.That(queue.Statistics.PacketsReceived, Is.EqualTo(1));
        Assert.That(queue.Statistics.MalformedMessages, Is.Zero);
        Assert.That(queue.Statistics.NetlinkErrors, Is.Zero);
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task AcceptWithMark_InterceptMark_TproxyDeliversToTransparentListenerOnOriginalPort(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync();
        var server = await s.ListenAsync(s.Topology.Server, v6);
        var proxyListener = await s.ListenAsync(s.Topology.Proxy, v6, transparent: true);
        var queue = await s.OpenQueueAsync();
        using var stop = new CancellationTokenSource();
        var loop = queue.RunAsync((in NfqueuePacket p) =>
        {
            s.Record(p);
            queue.AcceptWithMark(p.PacketId, NfqueueClient.MaskedMark(p.Mark, 0x1, 0x1));
        }, stop.Token);

        var (_, accepted) = await s.ConnectAndExchangeAsync(proxyListener, v6);
        await stop.CancelAsync();
        await loop.WaitAsync(Timeout);

        // The proxy holds the connection under the server's address and the original port.
        Assert.That(accepted.LocalEndPoint, Is.EqualTo(new IPEndPoint(InterceptionScenario.ServerAddress(v6), InterceptionScenario.Port)));
        Assert.That(((IPEndPoint)accepted.RemoteEndPoint!).Address, Is.EqualTo(InterceptionScenario.ClientAddress(v6)));
        Assert.That(server.Poll(0, SelectMode.SelectRead), Is.False, "the server must not have seen a connection");
        Assert.That(s.Seen, Has.Count.EqualTo(1));
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task AcceptWithPayload_OptionAddedToSyn_SeenAfterTheHopAndConnectionWorks(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync();
        var server = await s.ListenAsync(s.Topology.Server, v6);
        var pcap = Path.Combine(Path.GetTempPath(), $"{s.Topology.Proxy.Name}-uplink.pcap");
        // RFC 6994 experimental option: kind 253, length 4, a 16-bit experiment id.
        byte[] option = [253, 4, 0x50, 0x53];
        try
        {
            await using var capture = await s.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, pcap, $"tcp port {InterceptionScenario.Port}");
            var queue = await s.OpenQueueAsync();
            using var stop = new CancellationTokenSource();
            var loop = queue.RunAsync((in NfqueuePacket p) =>
            {
                s.Record(p);
                queue.AcceptWithPayload(p.PacketId, TcpTestPackets.InsertOption(p.Payload, option));
            }, stop.Token);

            await s.ConnectAndExchangeAsync(server, v6);
            await stop.CancelAsync();
            await loop.WaitAsync(Timeout);
            var packets = await capture.StopAsync().WaitAsync(Timeout);

            var syns = packets.Select(p => p.IpPacket.ToArray()).Where(ip => ip.Length > 0 && TcpTestPackets.IsSyn(ip)).ToList();
            Assert.That(syns, Has.Count.EqualTo(1), capture.Log);
            var options = TcpTestPackets.Options(syns[0]).ToArray();
            Assert.That(options.AsSpan().IndexOf(option), Is.GreaterThanOrEqualTo(0), Convert.ToHexString(options));
            Assert.That(TcpTestPackets.TcpChecksumValid(syns[0]), Is.True);
            Assert.That(TcpTestPackets.Options(s.Seen.Single().Payload).IndexOf(option), Is.LessThan(0), "the client's SYN did not carry it");
        }
        finally
        {
            File.Delete(pcap);
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task QueueBypass_NoListenerOnQueue_TrafficPasses(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync();
        var server = await s.ListenAsync(s.Topology.Server, v6);
        var rules = await s.Topology.Proxy.CheckAsync(v6 ? "ip6tables-save" : "iptables-save", ["-t", "raw"]);
        Assert.That(rules, Does.Contain("--queue-num 3 --queue-bypass"));

        var (_, accepted) = await s.ConnectAndExchangeAsync(server, v6);

        Assert.That(((IPEndPoint)accepted.RemoteEndPoint!).Address, Is.EqualTo(InterceptionScenario.ClientAddress(v6)));
    }

    [Test]
    public async Task FailOpen_QueueFull_FurtherSynsPass()
    {
        await using var s = await InterceptionScenario.CreateAsync();
        var server = await s.ListenAsync(s.Topology.Server, v6: false);
        var queue = await s.OpenQueueAsync(maxQueueLength: 1);
        using var stop = new CancellationTokenSource();
        // Hold every packet: the first SYN fills the queue.
        var loop = queue.RunAsync((in NfqueuePacket p) => s.Record(p), stop.Token);

        var blocked = await s.Topology.Client.RunInNamespaceAsync(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        using var blockedCts = new CancellationTokenSource(Timeout);
        var heldConnect = blocked.ConnectAsync(new IPEndPoint(InterceptionScenario.ServerAddress(false), InterceptionScenario.Port), blockedCts.Token).AsTask();
        await ProxySelection.IntegrationTests.Lab.LabTests.WaitUntilAsync(() => !s.Seen.IsEmpty, Timeout);

        var (_, accepted) = await s.ConnectAndExchangeAsync(server, v6: false);

        // Only the first SYN was queued; the second found the queue full and was accepted by the kernel (fail-open).
        Assert.That(accepted.Connected, Is.True);
        Assert.That(s.Seen, Has.Count.EqualTo(1));
        await stop.CancelAsync();
        await loop.WaitAsync(Timeout);
        queue.Dispose(); // accepts what it still holds
        await heldConnect.WaitAsync(Timeout);
        blocked.Dispose();
    }

    [Test]
    public async Task EgressHook_OwnSynWithEgressMark_IsQueuedAtPostrouting()
    {
        await using var s = await InterceptionScenario.CreateAsync();
        var server = await s.ListenAsync(s.Topology.Server, v6: false);
        var queue = await s.OpenQueueAsync();
        using var stop = new CancellationTokenSource();
        var loop = queue.RunAsync((in NfqueuePacket p) =>
        {
            s.Record(p);
            queue.Accept(p.PacketId);
        }, stop.Token);

        using var probe = await s.Topology.Proxy.RunInNamespaceAsync(() =>
        {
            var c = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            c.SetRawSocketOption(1 /* SOL_SOCKET */, 36 /* SO_MARK */, BitConverter.GetBytes(0x2));
            return c;
        });
        using var cts = new CancellationTokenSource(Timeout);
        var accept = server.AcceptAsync(cts.Token).AsTask();
        await probe.ConnectAsync(new IPEndPoint(InterceptionScenario.ServerAddress(false), InterceptionScenario.Port), cts.Token);
        using var accepted = await accept.WaitAsync(Timeout);
        await stop.CancelAsync();
        await loop.WaitAsync(Timeout);

        var syn = s.Seen.Single();
        Assert.That(syn.Hook, Is.EqualTo(NetfilterHook.PostRouting));
        Assert.That(syn.Mark & 0x2, Is.EqualTo(0x2u));
        Assert.That(TcpTestPackets.IsSyn(syn.Payload), Is.True);
    }

    [Test]
    public async Task Open_QueueAlreadyBound_ThrowsNfqueueExceptionWithEperm()
    {
        await using var s = await InterceptionScenario.CreateAsync(applyRules: false);
        await s.OpenQueueAsync();

        var e = Assert.ThrowsAsync<NfqueueException>(async () => await s.OpenQueueAsync());

        // nfqnl_recv_config answers EPERM when another netlink port holds the queue.
        Assert.That(e!.Errno, Is.EqualTo(1), e.Message);
    }
}
