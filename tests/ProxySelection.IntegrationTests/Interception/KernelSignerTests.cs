using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using ProxySelection.Interception.Bpf;
using ProxySelection.Lab;
using ProxySelection.Relay;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>
/// The kernel signs the proxy's own SYN and SYN/ACK (issue 13): a <see cref="KernelSigner"/> open in this test process,
/// sockets made in two namespaces of the test's own, the handshakes captured on the server's veth and checked with the
/// Wire codec and key ring the daemon uses. The signer is opened once (OneTimeSetUp): it moves the whole test process
/// into its cgroup, and every socket made afterwards runs the program, so the fixture does it once and moves the
/// process back in OneTimeTearDown. Marks decide per socket; unmarked sockets are the control.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class KernelSignerTests
{
    private static readonly byte[] Key = [.. Enumerable.Range(1, 32).Select(i => (byte)i)];
    private static readonly byte[] NewKey = [.. Enumerable.Range(101, 32).Select(i => (byte)i)];
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private const byte ProxyId = 7;
    private const int SoMark = 36;

    private ProxySelection.Lab.Lab? _lab;
    private NetNamespace? _client;
    private NetNamespace? _server;
    private KernelSigner? _signer;
    private string _directory = "";

    private static KernelSignerConfig Config(byte[] key, byte keyId, bool relabelMptcp = true) => new()
    {
        Key = key,
        RelabelMptcp = relabelMptcp,
        // Claim (Msg 2), P = 1, priority 5: the short form on SYN/ACKs, the long form (key id, flags 0) on SYNs.
        SynAck = new KernelSignedOption([30, 8, 0xF1, 0xA5, 0xA5, ProxyId], 2),
        Syn = new Dictionary<int, KernelSignedOption> { [1] = new([30, 16, 0xF1, 0xA5, 0xA5, ProxyId, keyId, 0], 8) },
    };

    [OneTimeSetUp]
    public async Task SetUp()
    {
        _lab = ProxySelection.Lab.Lab.Create();
        _directory = Directory.CreateTempSubdirectory("psel-ksign-").FullName;
        _client = await _lab.AddNamespaceAsync("kc");
        _server = await _lab.AddNamespaceAsync("ks");
        await _lab.ConnectAsync(_client, "kc0", _server, "ks0");
        await _client.AddAddressAsync("kc0", "198.18.31.1/24");
        await _server.AddAddressAsync("ks0", "198.18.31.2/24");
        await _client.AddAddressAsync("kc0", "2001:db8:31::1/64");
        await _server.AddAddressAsync("ks0", "2001:db8:31::2/64");
        KernelSigner.Cleanup(CgroupName);
        Assert.That(KernelSigner.TryOpen(CgroupName, Config(Key, 1), KernelSigner.DefaultSlotMask, out _signer, out string? reason), Is.True, reason);
        // The MPTCP placeholder is relabelled where each side's segments leave: the client's SYN, the server's SYN/ACK.
        await AttachEgressAsync(_client, "kc0");
        await AttachEgressAsync(_server, "ks0");
    }

    private async Task AttachEgressAsync(NetNamespace ns, string device)
    {
        // "5: kc0@if4: <...": the index before the first colon.
        string line = await ns.IpAsync("-o", "link", "show", "dev", device);
        int ifindex = int.Parse(line[..line.IndexOf(':', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture);
        string? reason = await ns.RunInNamespaceAsync(() => _signer!.TryAttachEgress(ifindex, out string? r) ? null : r);
        Assert.That(reason, Is.Null);
    }

    private static string CgroupName => $"psel-ksign-test-{Environment.ProcessId}";

    [OneTimeTearDown]
    public async Task TearDown()
    {
        _signer?.Dispose();
        if (_lab != null)
        {
            await _lab.DisposeAsync();
        }

        Directory.Delete(_directory, recursive: true);
    }

    private static IPAddress ServerAddress(bool v6) => IPAddress.Parse(v6 ? "2001:db8:31::2" : "198.18.31.2");

    private sealed record Handshake(IReadOnlyList<CapturedSegment> Syns, IReadOnlyList<CapturedSegment> SynAcks, KernelSignerCounts AfterHandshake,
        KernelSignerCounts AfterData);

    /// <summary>One connection: listener in the server namespace, client in the client namespace, each with its mark; <paramref name="bytes"/> sent and read back whole.</summary>
    private async Task<Handshake> ConnectAsync(bool v6, bool mptcp, uint listenerMark, uint clientMark, int bytes, bool dualStack = false, Func<Task>? whileOpen = null)
    {
        // Dual stack: AF_INET6 sockets on an IPv4 connection (v4-mapped addresses), as a listener on [::] sees it.
        var family = v6 || dualStack ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
        var bindTo = dualStack ? IPAddress.IPv6Any : ServerAddress(v6);
        var connectTo = dualStack ? ServerAddress(false).MapToIPv6() : ServerAddress(v6);
        var protocol = mptcp ? TransportProtocol.Mptcp : TransportProtocol.Tcp;
        using var listener = await _server!.RunInNamespaceAsync(() =>
        {
            var s = SocketFactory.Default.Create(family, protocol);
            SetMark(s, listenerMark);
            if (dualStack)
            {
                s.DualMode = true;
            }

            s.Bind(new IPEndPoint(bindTo, 0));
            s.Listen(4);
            return s;
        });
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        using var client = await _client!.RunInNamespaceAsync(() =>
        {
            var s = SocketFactory.Default.Create(family, protocol);
            SetMark(s, clientMark);
            if (dualStack)
            {
                s.DualMode = true;
            }

            return s;
        });
        var capture = await _server.StartCaptureAsync("ks0", Path.Combine(_directory, $"{port}.pcap"), $"tcp port {port}"); // tcp[] offsets are IPv4-only in pcap filters: SYNs picked below
        KernelSignerCounts afterHandshake, afterData;
        IReadOnlyList<PcapPacket> packets;
        try
        {
            using var cts = new CancellationTokenSource(Timeout);
            var accept = listener.AcceptAsync(cts.Token).AsTask();
            await client.ConnectAsync(new IPEndPoint(connectTo, port), cts.Token);
            using var accepted = await accept;
            afterHandshake = _signer!.ReadCounts();
            var data = new byte[bytes];
            var send = client.SendAsync(data, SocketFlags.None, cts.Token).AsTask();
            var buffer = new byte[64 * 1024];
            int read = 0;
            while (read < bytes)
            {
                int n = await accepted.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                Assert.That(n, Is.Positive, "the connection closed early");
                read += n;
            }

            Assert.That(await send, Is.EqualTo(bytes));
            if (whileOpen != null)
            {
                await whileOpen();
            }

            afterData = _signer.ReadCounts();
        }
        finally
        {
            packets = await capture.StopAsync();
            await capture.DisposeAsync();
        }

        var segments = CaptureComparison.Segments(packets, s => (s.Flags & TcpFlags.Syn) != 0);
        Assert.That(segments.Select(s => s.Flags & TcpFlags.Ack).Distinct().Count(), Is.EqualTo(2), "the capture holds the SYN and the SYN/ACK");
        return new Handshake(
            [.. segments.Where(s => (s.Flags & TcpFlags.Ack) == 0)],
            [.. segments.Where(s => (s.Flags & TcpFlags.Ack) != 0)],
            afterHandshake,
            afterData);
    }

    private static void SetMark(Socket socket, uint mark)
    {
        if (mark != 0)
        {
            socket.SetRawSocketOption(1, SoMark, BitConverter.GetBytes(mark));
        }
    }

    /// <summary>The option a segment carries (null when none) and whether <paramref name="ring"/> verifies it over the segment's flow (spec §9.2).</summary>
    private static (MpProxyOption? Option, bool Verified, bool MpCapable) Check(CapturedSegment segment, MpProxyKeyRing ring)
    {
        Assert.That(TcpHeader.TryParse(segment.Bytes, out var tcp), Is.EqualTo(WireError.None));
        bool mpCapable = TcpOptionReader.TryFindMptcp(tcp.Options, MptcpSubtype.MpCapable, out _) == WireError.None;
        if (MpProxyCodec.TryFind(tcp.Options, out var option, out _) != MpProxyStatus.Ok)
        {
            return (null, false, mpCapable);
        }

        var source = IPAddress.Parse(segment.Source);
        var destination = IPAddress.Parse(segment.Destination);
        var flow = (segment.Flags & TcpFlags.Ack) == 0
            ? MpProxyFlow.ForSyn(source, destination, tcp.SourcePort, tcp.DestinationPort, tcp.SequenceNumber)
            : MpProxyFlow.ForSyn(destination, source, tcp.DestinationPort, tcp.SourcePort, tcp.AcknowledgmentNumber - 1).WithSynAck(tcp.SequenceNumber);
        return (option, ring.Verify(option, flow), mpCapable);
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task MarkedTcpSocket_SynCarriesLongForm_MarkedListener_SynAckCarriesShortForm_BothVerify(bool v6)
    {
        var before = _signer!.ReadCounts();
        var h = await ConnectAsync(v6, mptcp: false, _signer.ListenerMark, _signer.SlotMark(1), 1000);
        var ring = new MpProxyKeyRing(1, Key);
        var syn = Check(h.Syns[0], ring);
        var synAck = Check(h.SynAcks[0], ring);
        Assert.Multiple(() =>
        {
            Assert.That(syn.Option?.WireLength, Is.EqualTo(MpProxyOption.LongLength));
            Assert.That(syn.Option?.ProxyId, Is.EqualTo(ProxyId));
            Assert.That(syn.Verified, Is.True, "the SYN's tag verifies under key 1");
            Assert.That(synAck.Option?.WireLength, Is.EqualTo(MpProxyOption.ShortLength));
            Assert.That(synAck.Verified, Is.True, "the SYN/ACK's tag verifies under key 1");
            Assert.That(h.AfterData.SynsSigned - before.SynsSigned, Is.EqualTo(h.Syns.Count).Or.EqualTo(h.Syns.Count + 1), "one per SYN sent (the capture may miss a retransmission)");
            Assert.That(h.AfterData.Errors, Is.EqualTo(before.Errors));
        });
    }

    /// <summary>An IPv4 connection on AF_INET6 sockets: the tags use family 4 and 4-byte addresses (§9.2), as the wire shows it.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task DualStackSockets_OnAnIpv4Connection_TagsOverTheIpv4Flow(bool mptcp)
    {
        var h = await ConnectAsync(v6: false, mptcp, _signer!.ListenerMark, _signer.SlotMark(1), 1000, dualStack: true);
        var ring = new MpProxyKeyRing(1, Key);
        Assert.Multiple(() =>
        {
            Assert.That(IPAddress.Parse(h.Syns[0].Source).AddressFamily, Is.EqualTo(AddressFamily.InterNetwork));
            Assert.That(Check(h.Syns[0], ring).Verified, Is.True, "the SYN of an AF_INET6 socket to ::ffff:198.18.31.2");
            Assert.That(Check(h.SynAcks[0], ring).Verified, Is.True, "the SYN/ACK of a listener on [::]");
        });
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task UnmarkedSockets_SynAndSynAckCarryNoMpProxy(bool v6)
    {
        var before = _signer!.ReadCounts();
        var h = await ConnectAsync(v6, mptcp: false, 0, 0, 1000);
        var ring = new MpProxyKeyRing(1, Key);
        Assert.Multiple(() =>
        {
            Assert.That(h.Syns.Concat(h.SynAcks).Select(s => Check(s, ring).Option), Has.All.Null);
            Assert.That(h.AfterData, Is.EqualTo(before), "the program wrote nothing and counted nothing");
        });
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task AfterTheHandshake_TheFlagIsClear_CountersDoNotRiseWhileOneMegabyteFlows(bool v6)
    {
        var h = await ConnectAsync(v6, mptcp: false, _signer!.ListenerMark, _signer.SlotMark(1), 1 << 20);
        Assert.That(h.AfterData, Is.EqualTo(h.AfterHandshake));
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task Update_NewKey_NextSynVerifiesUnderTheNewKeyOnly(bool v6)
    {
        _signer!.Update(Config(NewKey, 2));
        try
        {
            var h = await ConnectAsync(v6, mptcp: false, 0, _signer.SlotMark(1), 100);
            var syn = h.Syns[0];
            Assert.Multiple(() =>
            {
                Assert.That(Check(syn, new MpProxyKeyRing(2, NewKey)).Verified, Is.True);
                Assert.That(Check(syn, new MpProxyKeyRing(2, Key)).Verified, Is.False);
                Assert.That(Check(syn, new MpProxyKeyRing(2, NewKey)).Option?.KeyId, Is.EqualTo(2));
            });
        }
        finally
        {
            _signer.Update(Config(Key, 1));
        }
    }

    /// <summary>
    /// MPTCP (the proxy's listeners and probes): the option rides beside MP_CAPABLE, in the 8 bytes an MPTCP SYN/ACK
    /// leaves and the 16 of an MPTCP SYN. The kernel refuses a second kind-30 option (6.18), so it leaves as the
    /// placeholder and the egress program relabels it: both counted, and what reaches the wire verifies.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task MptcpSockets_SynAndSynAckCarryVerifiedMpProxyBesideMpCapable_ConnectionWorks(bool v6)
    {
        var before = _signer!.ReadCounts();
        var h = await ConnectAsync(v6, mptcp: true, _signer.ListenerMark, _signer.SlotMark(1), 100_000);
        var ring = new MpProxyKeyRing(1, Key);
        var syn = Check(h.Syns[0], ring);
        var synAck = Check(h.SynAcks[0], ring);
        Assert.Multiple(() =>
        {
            Assert.That(syn.MpCapable && synAck.MpCapable, Is.True, "MP_CAPABLE on both");
            Assert.That(syn.Option?.WireLength, Is.EqualTo(MpProxyOption.LongLength));
            Assert.That(syn.Verified, Is.True, "the probe-like MPTCP SYN verifies");
            Assert.That(synAck.Option?.WireLength, Is.EqualTo(MpProxyOption.ShortLength));
            Assert.That(synAck.Verified, Is.True, "the MPTCP listener's SYN/ACK verifies");
            Assert.That(h.AfterData.Placeholders - before.Placeholders, Is.GreaterThanOrEqualTo(2));
            Assert.That(h.AfterData.Relabelled - before.Relabelled, Is.EqualTo(h.AfterData.Placeholders - before.Placeholders));
            Assert.That(h.AfterData.NoRoom, Is.EqualTo(before.NoRoom), "the option fitted");
            Assert.That(h.AfterData.Errors, Is.EqualTo(before.Errors));
        });
    }

    /// <summary>Relabelling off: the MPTCP segments go out without MP_PROXY (fail open), the kernel's refusal counted.</summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task MptcpSockets_RelabelOff_KernelRefusesSecondKind30Option_FailOpenAndCounted(bool v6)
    {
        _signer!.Update(Config(Key, 1, relabelMptcp: false));
        try
        {
            var before = _signer.ReadCounts();
            var h = await ConnectAsync(v6, mptcp: true, _signer.ListenerMark, _signer.SlotMark(1), 100_000);
            var ring = new MpProxyKeyRing(1, Key);
            Assert.Multiple(() =>
            {
                Assert.That(h.Syns.Concat(h.SynAcks).Select(s => Check(s, ring).Option), Has.All.Null);
                Assert.That(h.Syns.Concat(h.SynAcks).Select(s => Check(s, ring).MpCapable), Has.All.True);
                Assert.That(h.AfterData.Errors - before.Errors, Is.GreaterThanOrEqualTo(2), "the SYN's and the SYN/ACK's refused store");
                Assert.That(h.AfterData.Placeholders, Is.EqualTo(before.Placeholders));
            });
        }
        finally
        {
            _signer.Update(Config(Key, 1));
        }
    }

    /// <summary>The emitted HMAC alone (BPF_PROG_TEST_RUN of a SCHED_CLS program over the message as packet bytes), every length M takes.</summary>
    [Test]
    public void EmittedHmac_TestRunOverPacketBytes_EqualsHmacSha256([Range(52, 80)] int length)
    {
        var random = new Random(length);
        var key = new byte[32];
        var message = new byte[length];
        random.NextBytes(key);
        random.NextBytes(message);
        using var scratch = BpfNative.CreateMap(BpfNative.MapTypeArray, 4, Sha256Layout.Size, 1, 0, "psel_test_tmp", out int errno);
        Assert.That(scratch.IsInvalid, Is.False, BpfNative.Errno(errno));
        using var midstates = BpfNative.CreateMap(BpfNative.MapTypeArray, 4, 64, 1, 0, "psel_test_mid", out errno);
        Assert.That(midstates.IsInvalid, Is.False, BpfNative.Errno(errno));
        var (inner, outer) = Sha256Block.HmacMidstates(key);
        var value = new byte[64];
        for (int k = 0; k < 8; k++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(k * 4), inner[k]);
            BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(32 + (k * 4)), outer[k]);
        }

        Assert.That(BpfNative.UpdateElement(midstates, new byte[4], value), Is.Zero);
        byte[] code = HmacTestProgram.Emit((int)scratch.DangerousGetHandle(), (int)midstates.DangerousGetHandle(), length);
        using var program = BpfNative.LoadProgram(BpfNative.ProgTypeSchedCls, code, 0, "psel_test_hmac", out errno, out string log);
        Assert.That(program.IsInvalid, Is.False, $"{BpfNative.Errno(errno)}\n{log[^Math.Min(log.Length, 2000)..]}");
        Assert.That(BpfNative.TestRun(program, message, out _), Is.Zero);
        var result = new byte[Sha256Layout.Size];
        Assert.That(BpfNative.LookupElement(scratch, new byte[4], result), Is.Zero);
        var mac = new byte[32];
        for (int k = 0; k < 8; k++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(mac.AsSpan(k * 4), BinaryPrimitives.ReadUInt32LittleEndian(result.AsSpan(Sha256Layout.State + (k * 4))));
        }

        Assert.That(mac, Is.EqualTo(HMACSHA256.HashData(key, message)));
    }

    [Test]
    public void OpenSigner_HasExactlyOneProgramOnItsCgroup_CleanupLeavesItAlone()
    {
        Assert.Multiple(() =>
        {
            Assert.That(KernelSigner.AttachedPrograms(_signer!.CgroupPath), Is.EqualTo(1));
            Assert.That(File.ReadAllText("/proc/self/cgroup"), Does.Contain(CgroupName));
        });
    }

    /// <summary>
    /// What a SIGKILL leaves: the (empty) cgroup directory, the bpf_link having gone with the process's descriptors.
    /// Cleanup removes an empty leftover of that name and never the live signer's (a non-empty cgroup cannot be removed).
    /// </summary>
    [Test]
    public void Cleanup_RemovesAnEmptyLeftoverCgroup_NotALiveOne()
    {
        string parent = Path.GetDirectoryName(_signer!.CgroupPath)!;
        string leftover = Path.Combine(_signer.CgroupPath, "psel-ksign-leftover");
        Directory.CreateDirectory(leftover);
        Assert.Multiple(() =>
        {
            Assert.That(KernelSigner.AttachedPrograms(leftover), Is.Zero, "nothing attached to a cgroup no signer holds");
            Assert.That(KernelSigner.Cleanup("psel-ksign-leftover"), Is.EqualTo(new[] { leftover }));
            Assert.That(Directory.Exists(leftover), Is.False);
            Assert.That(KernelSigner.Cleanup(CgroupName), Is.Empty, "the live signer's cgroup holds this process");
            Assert.That(Directory.Exists(_signer.CgroupPath), Is.True);
            Assert.That(Directory.Exists(parent), Is.True);
        });
    }

    /// <summary>
    /// A SIGKILLed process that held the signer's bpf_link and sat in its cgroup leaves no program attached, and
    /// Cleanup removes the cgroup. The child here is a <c>sleep</c> started inside a second signer's cgroup with a
    /// duplicate of its link descriptor; the signer (this process) then lets go of its own, so the child holds the
    /// attachment alone, as a daemon holds it, until it is killed.
    /// </summary>
    [Test]
    public async Task SigkilledHolderOfTheLink_LeavesNoProgramAttached_CleanupRemovesTheCgroup()
    {
        const string name = "psel-ksign-kill";
        Assert.That(KernelSigner.TryOpen(name, Config(Key, 1), KernelSigner.DefaultSlotMask, out var inner, out string? reason), Is.True, reason);
        string path = inner!.CgroupPath;
        System.Diagnostics.Process child;
        int inherited = BpfNative.DuplicateInheritable(inner.Link);
        try
        {
            Assert.That(inherited, Is.GreaterThanOrEqualTo(0));
            child = System.Diagnostics.Process.Start("sleep", "60");
        }
        finally
        {
            BpfNative.Close(inherited);
            inner.Dispose();
        }

        try
        {
            Assert.Multiple(() =>
            {
                Assert.That(Directory.Exists(path), Is.True, "the child keeps the cgroup busy");
                Assert.That(KernelSigner.AttachedPrograms(path), Is.EqualTo(1), "the child's descriptor keeps the program attached");
            });
        }
        finally
        {
            child.Kill();
            using var exited = new CancellationTokenSource(Timeout);
            await child.WaitForExitAsync(exited.Token);
        }

        // The link goes when the dead process's last descriptor closes: bounded wait for the kernel's deferred release.
        var deadline = DateTime.UtcNow + Timeout;
        while (KernelSigner.AttachedPrograms(path) != 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.Multiple(() =>
        {
            Assert.That(KernelSigner.AttachedPrograms(path), Is.Zero);
            Assert.That(KernelSigner.Cleanup(name), Is.EqualTo(new[] { path }));
            Assert.That(Directory.Exists(path), Is.False);
        });
    }

    /// <summary>
    /// An MP_JOIN of a marked MPTCP connection: its SYN has 8 bytes left (the long form needs 16), so nothing is written,
    /// it leaves as it is and the join completes (fail open), counted as no room. The listener's MP_JOIN SYN/ACK (4 bytes
    /// left: the presence form at most, which this proxy does not write) is left alone and not counted: a join is steered
    /// by its token (spec §5.7).
    /// </summary>
    [Test]
    public async Task MptcpJoin_NoRoomForTheOption_SegmentsLeaveAsTheyAre_OnlyTheSynCounted()
    {
        await _client!.AddAddressAsync("kc0", "198.18.31.3/24");
        await _client.SetMptcpLimitsAsync(1, 0);
        await _server!.SetMptcpLimitsAsync(1, 0);
        await _client.AddMptcpEndpointAsync("198.18.31.3", "kc0", "subflow");
        try
        {
            var before = _signer!.ReadCounts();
            var h = await ConnectAsync(v6: false, mptcp: true, _signer.ListenerMark, _signer.SlotMark(1), 100_000, whileOpen: async () =>
            {
                var deadline = DateTime.UtcNow + Timeout;
                while (_signer.ReadCounts().NoRoom - before.NoRoom < 1 && DateTime.UtcNow < deadline)
                {
                    await Task.Delay(20);
                }
            });
            var ring = new MpProxyKeyRing(1, Key);
            var joins = h.Syns.Concat(h.SynAcks).Where(s => TcpHeader.TryParse(s.Bytes, out var tcp) == WireError.None
                && TcpOptionReader.TryFindMptcp(tcp.Options, MptcpSubtype.MpJoin, out _) == WireError.None).ToList();
            Assert.Multiple(() =>
            {
                Assert.That(h.AfterData.NoRoom - before.NoRoom, Is.EqualTo(1), "the join's SYN; not its SYN/ACK");
                Assert.That(joins.Select(j => j.Flags & TcpFlags.Ack).Distinct().Count(), Is.EqualTo(2), "the capture holds the join's SYN and SYN/ACK");
                Assert.That(joins.Select(j => Check(j, ring).Option), Has.All.Null);
                Assert.That(Check(h.Syns[0], ring).Verified, Is.True, "the first subflow's SYN is still signed");
                Assert.That(h.AfterData.Errors, Is.EqualTo(before.Errors));
            });
        }
        finally
        {
            await _client.IpAsync("mptcp", "endpoint", "flush");
        }
    }
}
