using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Lab;
using ProxySelection.Relay;
using ProxySelection.Wire;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>The NFQUEUE client in the proxy namespace against real SYNs from the client namespace.</summary>
[TestFixture]
public sealed class NfqueueInterceptionTests
{
    private static readonly TimeSpan Timeout = InterceptionScenario.Timeout;

    [TestCase(false)]
    [TestCase(true)]
    public async Task Accept_QueuedSyn_ConnectionReachesServerAndOnlyTheBindIsLogged(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6).WaitAsync(Timeout);
        var log = new RecordingLogger();
        var queue = await s.OpenQueueAsync(logger: log).WaitAsync(Timeout);
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            s.Record(p);
            queue.Accept(p.PacketId);
        });

        var (_, accepted) = await s.ConnectAndExchangeAsync(server, v6).WaitAsync(Timeout);
        await loop.StopAsync();

        Assert.That(((IPEndPoint)accepted.RemoteEndPoint!).Address, Is.EqualTo(InterceptionScenario.ClientAddress(v6)));
        var syn = s.Seen.Single();
        Assert.That(syn.Hook, Is.EqualTo(NetfilterHook.PreRouting));
        Assert.That(syn.Family, Is.EqualTo(v6 ? (byte)10 : (byte)2));
        Assert.That(syn.InDevice, Is.Not.Zero);
        Assert.That(IsSyn(syn.Payload), Is.True);
        Assert.That(TcpPacket.Parse(syn.Payload).Tcp.DestinationPort, Is.EqualTo(InterceptionScenario.Port));
        Assert.That(queue.Statistics.PacketsReceived, Is.EqualTo(1));
        Assert.That(queue.Statistics.MalformedMessages, Is.Zero);
        Assert.That(queue.Statistics.NetlinkErrors, Is.Zero);
        Assert.That(log.Entries.Select(e => (e.Level, e.Id.Id)), Is.EqualTo(new[] { (LogLevel.Information, 1000) }), "a handled packet logs nothing");
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task AcceptWithMark_InterceptMark_TproxyDeliversToTransparentListenerOnOriginalPort(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6).WaitAsync(Timeout);
        var proxyListener = await s.ListenAsync(s.Topology.Proxy, v6, transparent: true).WaitAsync(Timeout);
        var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            s.Record(p);
            queue.AcceptWithMark(p.PacketId, NfqueueClient.MaskedMark(p.Mark, InterceptionScenario.InterceptMark, InterceptionScenario.InterceptMark));
        });

        var (_, accepted) = await s.ConnectAndExchangeAsync(proxyListener, v6).WaitAsync(Timeout);
        await loop.StopAsync();

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
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6).WaitAsync(Timeout);
        var pcap = Path.Combine(Path.GetTempPath(), $"{s.Topology.Proxy.Name}-uplink.pcap");
        // RFC 6994 experimental option: kind 253, length 4, a 16-bit experiment id.
        byte[] option = [253, 4, 0x50, 0x53];
        try
        {
            await using var capture = await s.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, pcap, $"tcp port {InterceptionScenario.Port}").WaitAsync(Timeout);
            var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
            await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
            {
                s.Record(p);
                queue.AcceptWithPayload(p.PacketId, InsertOption(p.Payload, option));
            });

            await s.ConnectAndExchangeAsync(server, v6).WaitAsync(Timeout);
            await loop.StopAsync();
            var packets = await capture.StopAsync().WaitAsync(Timeout);

            var syns = packets.Select(p => p.IpPacket.ToArray()).Where(IsSyn).ToList();
            Assert.That(syns, Has.Count.EqualTo(1), capture.Log);
            var options = Options(syns[0]);
            Assert.That(options.AsSpan().IndexOf(option), Is.GreaterThanOrEqualTo(0), Convert.ToHexString(options));
            Assert.That(TcpChecksumValid(syns[0]), Is.True);
            Assert.That(Options(s.Seen.Single().Payload).AsSpan().IndexOf(option), Is.LessThan(0), "the client's SYN did not carry it");
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
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6).WaitAsync(Timeout);
        var rules = await s.Topology.Proxy.CheckAsync(v6 ? "ip6tables-save" : "iptables-save", ["-t", "raw"]).WaitAsync(Timeout);
        Assert.That(rules, Does.Contain("--queue-num 3 --queue-bypass"));

        var (_, accepted) = await s.ConnectAndExchangeAsync(server, v6).WaitAsync(Timeout);

        Assert.That(((IPEndPoint)accepted.RemoteEndPoint!).Address, Is.EqualTo(InterceptionScenario.ClientAddress(v6)));
    }

    [Test]
    public async Task FailOpen_QueueFull_FurtherSynsPass()
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(Timeout);
        var queue = await s.OpenQueueAsync(maxQueueLength: 1).WaitAsync(Timeout);
        // Hold every packet: the first SYN fills the queue.
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) => s.Record(p));

        var blocked = await s.SocketAsync(s.Topology.Client, v6: false).WaitAsync(Timeout);
        using var blockedCts = new CancellationTokenSource(Timeout);
        var heldConnect = blocked.ConnectAsync(new IPEndPoint(InterceptionScenario.ServerAddress(false), InterceptionScenario.Port), blockedCts.Token).AsTask();
        await ProxySelection.IntegrationTests.Lab.LabTests.WaitUntilAsync(() => !s.Seen.IsEmpty, Timeout);

        var (_, accepted) = await s.ConnectAndExchangeAsync(server, v6: false).WaitAsync(Timeout);

        // Only the first SYN was queued; the second found the queue full and was accepted by the kernel (fail-open).
        Assert.That(accepted.Connected, Is.True);
        Assert.That(s.Seen, Has.Count.EqualTo(1));
        await loop.StopAsync();
        queue.Dispose(); // accepts what it still holds
        await heldConnect.WaitAsync(Timeout);
        blocked.Dispose();
    }

    [Test]
    public async Task EgressHook_OwnSynWithEgressMark_IsQueuedAtPostrouting()
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(Timeout);
        var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            s.Record(p);
            queue.Accept(p.PacketId);
        });

        var probe = await s.SocketAsync(s.Topology.Proxy, v6: false, mark: InterceptionScenario.EgressMark).WaitAsync(Timeout);
        using var cts = new CancellationTokenSource(Timeout);
        var accept = server.AcceptAsync(cts.Token).AsTask();
        await probe.ConnectAsync(new IPEndPoint(InterceptionScenario.ServerAddress(false), InterceptionScenario.Port), cts.Token);
        using var accepted = await accept.WaitAsync(Timeout);
        await loop.StopAsync();

        var syn = s.Seen.Single();
        Assert.That(syn.Hook, Is.EqualTo(NetfilterHook.PostRouting));
        Assert.That(syn.Mark & 0x2, Is.EqualTo(0x2u));
        Assert.That(IsSyn(syn.Payload), Is.True);
    }

    [Test]
    public async Task Open_QueueAlreadyBound_ThrowsNfqueueExceptionWithEperm()
    {
        await using var s = await InterceptionScenario.CreateAsync(applyRules: false).WaitAsync(Timeout);
        await s.OpenQueueAsync().WaitAsync(Timeout);

        var e = Assert.ThrowsAsync<NfqueueException>(async () => await s.OpenQueueAsync().WaitAsync(Timeout));

        // nfqnl_recv_config answers EPERM when another netlink port holds the queue.
        Assert.That(e!.Errno, Is.EqualTo(1), e.Message);
    }

    [Test]
    public async Task BatchVerdict_SeveralHeldSyns_OneMessageAcceptsAll()
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(Timeout);
        var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) => s.Record(p));
        var clients = new List<Socket>();
        var connects = new List<Task>();
        using var cts = new CancellationTokenSource(Timeout);
        for (var i = 0; i < 4; i++)
        {
            var c = await s.SocketAsync(s.Topology.Client, v6: false).WaitAsync(Timeout);
            clients.Add(c);
            connects.Add(c.ConnectAsync(new IPEndPoint(InterceptionScenario.ServerAddress(false), InterceptionScenario.Port), cts.Token).AsTask());
        }

        try
        {
            await ProxySelection.IntegrationTests.Lab.LabTests.WaitUntilAsync(() => s.Seen.Count >= 4, Timeout);
            Assert.That(connects.Any(t => t.IsCompleted), Is.False, "held SYNs cannot have connected");

            queue.SetBatchVerdict(s.Seen.Max(p => p.Id), NfqueueVerdict.Accept);
            await Task.WhenAll(connects).WaitAsync(Timeout);

            Assert.That(connects.All(t => t.IsCompletedSuccessfully), Is.True);
            Assert.That(queue.Statistics.NetlinkErrors, Is.Zero);
        }
        finally
        {
            await loop.StopAsync();
            clients.ForEach(c => c.Dispose());
        }
    }

    [Test]
    public async Task Drop_FirstSyn_ClientRetransmitsAndTheAcceptedRetryConnects()
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(Timeout);
        var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            s.Record(p);
            if (s.Seen.Count == 1)
            {
                queue.Drop(p.PacketId);
            }
            else
            {
                queue.Accept(p.PacketId);
            }
        });

        await s.ConnectAndExchangeAsync(server, v6: false).WaitAsync(Timeout);
        await loop.StopAsync();

        var seen = s.Seen.ToList();
        Assert.That(seen, Has.Count.EqualTo(2), "the dropped SYN and its retransmission");
        Assert.That(seen[1].Payload.AsSpan(20, 4).SequenceEqual(seen[0].Payload.AsSpan(20, 4)), Is.True, "same ports: a retransmission");
    }

    [Test]
    public async Task Receive_ReceiveBufferOverrun_CountsEnobufsLogsAWarningAndKeepsReceiving()
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(Timeout);
        // The smallest buffer (64 KiB, doubled by the kernel) overflows after a few hundred queued SYN messages.
        var log = new RecordingLogger();
        var queue = await s.Topology.Proxy.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions
        {
            QueueNumber = 3,
            ReceiveBufferBytes = 64 * 1024,
        }, logger: log)).WaitAsync(Timeout);
        using var _ = queue;
        var clients = new List<Socket>();
        using var cts = new CancellationTokenSource(Timeout);
        try
        {
            // Bounded burst: 600 connection attempts, nobody receiving on the queue meanwhile.
            for (var i = 0; i < 600; i++)
            {
                var c = await s.Topology.Client.RunInNamespaceAsync(() =>
                {
                    var sock = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { Blocking = false };
                    try
                    {
                        sock.Connect(new IPEndPoint(InterceptionScenario.ServerAddress(false), InterceptionScenario.Port));
                    }
                    catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
                    {
                        // In progress: the SYN is on its way to the queue.
                    }

                    return sock;
                }).WaitAsync(Timeout);
                clients.Add(c);
            }

            var handled = 0;
            var deadline = System.Diagnostics.Stopwatch.StartNew();
            while (deadline.Elapsed < TimeSpan.FromSeconds(5) && (queue.Statistics.ReceiveOverruns == 0 || handled == 0))
            {
                handled += queue.Receive((in NfqueuePacket p) => queue.Accept(p.PacketId), TimeSpan.FromMilliseconds(200));
            }

            Assert.That(queue.Statistics.ReceiveOverruns, Is.GreaterThan(0));
            Assert.That(handled, Is.GreaterThan(0), "receiving goes on after ENOBUFS");
            Assert.That(queue.Statistics.MalformedMessages, Is.Zero);
            var overruns = log.Entries.Where(e => e.Id.Id == 1001).ToList();
            Assert.That(overruns, Has.Count.EqualTo(queue.Statistics.ReceiveOverruns), "one warning per ENOBUFS");
            Assert.That(overruns.Select(e => e.Level), Is.All.EqualTo(LogLevel.Warning));
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task InterceptMark_MptcpClientOnTwoPaths_BothSubflowsReachTheTransparentListener(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var listener = await s.ListenAsync(s.Topology.Proxy, v6, transparent: true, mptcp: true).WaitAsync(Timeout);
        var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
        // Every SYN on the port, MP_CAPABLE and MP_JOIN alike, is intercepted.
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            s.Record(p);
            _ = InterceptionScenario.TryIntercept(queue, p);
        });
        var client = await s.SocketAsync(s.Topology.Client, v6, mptcp: true).WaitAsync(Timeout);
        using var cts = new CancellationTokenSource(Timeout);
        try
        {
            var accept = listener.AcceptAsync(cts.Token).AsTask();
            await client.ConnectAsync(new IPEndPoint(InterceptionScenario.ServerAddress(v6), InterceptionScenario.Port), cts.Token);
            using var accepted = await accept.WaitAsync(Timeout);
            await client.SendAsync("mptcp"u8.ToArray(), cts.Token);
            var buffer = new byte[16];
            var n = await accepted.ReceiveAsync(buffer, cts.Token);

            await ProxySelection.IntegrationTests.Lab.LabTests.WaitUntilAsync(() => AdditionalSubflows(accepted) >= 1, Timeout);

            Assert.That(System.Text.Encoding.ASCII.GetString(buffer, 0, n), Is.EqualTo("mptcp"));
            Assert.That(accepted.LocalEndPoint, Is.EqualTo(new IPEndPoint(InterceptionScenario.ServerAddress(v6), InterceptionScenario.Port)));
            var path2 = IPAddress.Parse(v6 ? TwoPathTopology.ClientPath2V6 : TwoPathTopology.ClientPath2V4);
            Assert.That(s.Seen.Select(p => SourceAddress(p.Payload)), Has.Member(path2), "the MP_JOIN SYN over path2 was queued");
            Assert.That(AdditionalSubflows(client), Is.EqualTo(1));
        }
        finally
        {
            await loop.StopAsync();
        }
    }

    [Test]
    public async Task CopyRange_ShorterThanSyn_PayloadCutAndOriginalLengthReported()
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(Timeout);
        using var queue = await s.Topology.Proxy.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions
        {
            QueueNumber = 3,
            CopyRange = 24,
        })).WaitAsync(Timeout);
        var copies = new System.Collections.Concurrent.ConcurrentQueue<NfqueuePacketCopy>();
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            copies.Enqueue(p.Copy());
            queue.Accept(p.PacketId);
        });

        await s.ConnectAndExchangeAsync(server, v6: false).WaitAsync(Timeout);
        await loop.StopAsync();

        var syn = copies.Single();
        Assert.That(syn.Payload, Has.Length.EqualTo(24));
        // A Linux SYN: 20 bytes of IPv4 header, 40 of TCP (20 + MSS, SACK_PERM, timestamps, window scale).
        Assert.That(syn.OriginalLength, Is.EqualTo(60));
    }

    [Test]
    public async Task GsoFlag_OwnEgressSyn_ReportsChecksumNotReady()
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(Timeout);
        using var queue = await s.Topology.Proxy.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions
        {
            QueueNumber = 3,
            Gso = true,
        })).WaitAsync(Timeout);
        var seen = new System.Collections.Concurrent.ConcurrentQueue<(NfqueueSkbInfo Info, NetfilterHook Hook)>();
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            seen.Enqueue((p.SkbInfo, p.Hook));
            queue.Accept(p.PacketId);
        });
        var probe = await s.SocketAsync(s.Topology.Proxy, v6: false, mark: InterceptionScenario.EgressMark).WaitAsync(Timeout);
        using var cts = new CancellationTokenSource(Timeout);
        try
        {
            var accept = server.AcceptAsync(cts.Token).AsTask();
            await probe.ConnectAsync(new IPEndPoint(InterceptionScenario.ServerAddress(false), InterceptionScenario.Port), cts.Token);
            using var accepted = await accept.WaitAsync(Timeout);
        }
        finally
        {
            await loop.StopAsync();
        }

        // With GSO the kernel no longer completes offloaded checksums before queueing a locally built packet, and
        // says so in NFQA_SKB_INFO: a payload rewrite must compute the full checksum itself.
        var syn = seen.Single();
        Assert.That(syn.Hook, Is.EqualTo(NetfilterHook.PostRouting));
        Assert.That(syn.Info.HasFlag(NfqueueSkbInfo.ChecksumNotReady), Is.True, syn.Info.ToString());
    }

    [Test]
    public async Task Verdict_UnknownPacketId_KernelErrorParsedAndCounted()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("nlerr").WaitAsync(Timeout);
        using var queue = await ns.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions { QueueNumber = 9 })).WaitAsync(Timeout);

        queue.Accept(12345);
        var handled = 0;
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (queue.Statistics.NetlinkErrors == 0 && deadline.Elapsed < Timeout)
        {
            handled += queue.Receive((in NfqueuePacket _) => { }, TimeSpan.FromMilliseconds(200));
        }

        Assert.That(handled, Is.Zero);
        Assert.That(queue.Statistics.NetlinkErrors, Is.EqualTo(1));
        Assert.That(queue.Statistics.LastErrno, Is.EqualTo(2), "ENOENT: no packet with that id");
        Assert.That(queue.Statistics.MalformedMessages, Is.Zero);
    }

    [Test]
    public async Task HandlerThrows_PacketAcceptedLoggedAsErrorAndLoopContinuesWithErrorCallback()
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6: false).WaitAsync(Timeout);
        var log = new RecordingLogger();
        var queue = await s.OpenQueueAsync(logger: log).WaitAsync(Timeout);
        var errors = new System.Collections.Concurrent.ConcurrentQueue<NfqueueException>();
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) => throw new InvalidOperationException("handler bug"), errors.Enqueue);

        await s.ConnectAndExchangeAsync(server, v6: false).WaitAsync(Timeout);
        await s.ConnectAndExchangeAsync(server, v6: false).WaitAsync(Timeout);
        await loop.StopAsync();

        Assert.That(errors, Has.Count.EqualTo(2));
        Assert.That(errors.First().InnerException, Is.InstanceOf<InvalidOperationException>());
        Assert.That(queue.Statistics.FailOpenAccepts, Is.EqualTo(2));
        var faults = log.Entries.Where(e => e.Id.Id == 1003).ToList();
        Assert.That(faults, Has.Count.EqualTo(2));
        Assert.That(faults.Select(e => e.Level), Is.All.EqualTo(LogLevel.Error));
        Assert.That(faults.Select(e => e.Exception), Is.All.InstanceOf<InvalidOperationException>());
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task EgressHook_InterceptedConnectionOnMarkedListener_SynAckQueuedAtPostroutingUnderServerAddress(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        // The proxy's transparent listener carries the egress mark, as one that must add MP_PROXY to its SYN/ACKs.
        var listener = await s.ListenAsync(s.Topology.Proxy, v6, transparent: true, mark: InterceptionScenario.EgressMark).WaitAsync(Timeout);
        var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
        {
            s.Record(p);
            if (!InterceptionScenario.TryIntercept(queue, p))
            {
                queue.Accept(p.PacketId);
            }
        });

        try
        {
            await s.ConnectAndExchangeAsync(listener, v6).WaitAsync(Timeout);
        }
        finally
        {
            await loop.StopAsync();
        }

        var seen = s.Seen.ToList();
        Assert.That(seen.Select(p => p.Hook), Is.EqualTo(new[] { NetfilterHook.PreRouting, NetfilterHook.PostRouting }));
        var synAck = seen[1];
        Assert.That(IsSynAck(synAck.Payload), Is.True, "SYN/ACK");
        Assert.That(synAck.Mark & 0x2, Is.EqualTo(0x2u));
        Assert.That(SourceAddress(synAck.Payload), Is.EqualTo(InterceptionScenario.ServerAddress(v6)), "answered under the server's address");
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task EgressHook_OptionAddedToOwnSynAck_ClientSideCaptureCarriesItAndConnectionWorks(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var listener = await s.ListenAsync(s.Topology.Proxy, v6, transparent: true, mark: InterceptionScenario.EgressMark).WaitAsync(Timeout);
        var pcap = Path.Combine(Path.GetTempPath(), $"{s.Topology.Proxy.Name}-path1.pcap");
        byte[] option = [253, 4, 0x50, 0x53];
        try
        {
            await using var capture = await s.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyPath1, pcap, $"tcp port {InterceptionScenario.Port}").WaitAsync(Timeout);
            var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
            await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) =>
            {
                s.Record(p);
                if (!InterceptionScenario.TryIntercept(queue, p))
                {
                    // The proxy's own SYN/ACK: the kernel completed its checksum before queueing (no GSO flag).
                    queue.AcceptWithPayload(p.PacketId, InsertOption(p.Payload, option));
                }
            });

            try
            {
                await s.ConnectAndExchangeAsync(listener, v6).WaitAsync(Timeout);
            }
            finally
            {
                await loop.StopAsync();
            }

            var packets = await capture.StopAsync().WaitAsync(Timeout);
            var synAcks = packets.Select(p => p.IpPacket.ToArray())
                .Where(IsSynAck).ToList();
            Assert.That(synAcks, Has.Count.EqualTo(1), capture.Log);
            Assert.That(Options(synAcks[0]).AsSpan().IndexOf(option), Is.GreaterThanOrEqualTo(0));
            Assert.That(TcpChecksumValid(synAcks[0]), Is.True);
        }
        finally
        {
            File.Delete(pcap);
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task Accept_TransparentListenerOnSamePort_PassedSynStillReachesServer(bool v6)
    {
        await using var s = await InterceptionScenario.CreateAsync().WaitAsync(Timeout);
        var server = await s.ListenAsync(s.Topology.Server, v6).WaitAsync(Timeout);
        // Listeners are opened before verdicts, so one exists on the port while other SYNs are passed.
        var proxyListener = await s.ListenAsync(s.Topology.Proxy, v6, transparent: true).WaitAsync(Timeout);
        var queue = await s.OpenQueueAsync().WaitAsync(Timeout);
        await using var loop = InterceptionScenario.Run(queue, (in NfqueuePacket p) => queue.Accept(p.PacketId));

        var (_, accepted) = await s.ConnectAndExchangeAsync(server, v6).WaitAsync(Timeout);
        await loop.StopAsync();

        Assert.That(((IPEndPoint)accepted.RemoteEndPoint!).Address, Is.EqualTo(InterceptionScenario.ClientAddress(v6)));
        Assert.That(proxyListener.Poll(0, SelectMode.SelectRead), Is.False, "the proxy's listener got nothing");
    }

    private static IPAddress SourceAddress(byte[] ip) => new(TcpPacket.Parse(ip).Ip.SourceAddress);

    /// <summary>mptcp_info.mptcpi_subflows (subflows beyond the first); null unless the socket runs MPTCP.</summary>
    private static int? AdditionalSubflows(Socket socket) =>
        MptcpSocket.TryGetInfo(socket, out var info) == MptcpStatus.Active ? info.AdditionalSubflows : null;

    private static bool IsSyn(byte[] ip) => HasFlags(ip, TcpFlags.Syn, TcpFlags.Syn | TcpFlags.Ack);

    private static bool IsSynAck(byte[] ip) => HasFlags(ip, TcpFlags.Syn | TcpFlags.Ack, TcpFlags.Syn | TcpFlags.Ack);

    private static bool HasFlags(byte[] ip, TcpFlags expected, TcpFlags mask) =>
        TcpPacket.TryParse(ip, out var p) == WireError.None && (p.Tcp.Flags & mask) == expected;

    private static byte[] Options(byte[] ip) => TcpPacket.Parse(ip).Tcp.Options.ToArray();

    private static bool TcpChecksumValid(byte[] ip) => InternetChecksum.VerifyTcp(TcpPacket.Parse(ip).Ip);

    /// <summary>A copy of the packet with <paramref name="option"/> inserted by the Wire codec (lengths and checksums
    /// recomputed: the queued packet's checksum is complete, so recomputing equals updating).</summary>
    private static byte[] InsertOption(ReadOnlySpan<byte> packet, ReadOnlySpan<byte> option)
    {
        var buffer = new byte[packet.Length + TcpHeader.MaxOptionsLength];
        packet.CopyTo(buffer);
        var error = OptionRewriter.TryInsert(buffer, packet.Length, option, out int length, ChecksumUpdate.Recompute);
        return error == WireError.None ? buffer[..length] : throw new WireException(error, 0, "cannot insert the test option");
    }
}
