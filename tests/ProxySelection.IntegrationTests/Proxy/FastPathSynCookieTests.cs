using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ProxySelection.Lab;
using ProxySelection.Wire;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Issue 12, first finding: spoofed MPTCP SYNs toward a server the cache knows TCP-only fill the transparent listener's
/// SYN queue; the kernel answers the next clients with SYN cookies and keeps no request socket for them. Their
/// completing ACK must still reach the listener (the ruleset's handshake set), not go on to the real server, which
/// resets it.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class FastPathSynCookieTests
{
    private const int SpoofedSyns = 400;
    private const int Downloads = 5;

    [TestCase(false)]
    [TestCase(true)]
    public async Task SpoofedFloodOverflowsTheListenersSynQueue_LegitimateMptcpDownloadsStillSucceed(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 1024 * 1024);
        await lab.StartNginxAsync();
        // A small SYN queue (listen's backlog is capped by somaxconn, per namespace): a few hundred spoofed SYNs fill it.
        await lab.Topology.Proxy.SysctlAsync(("net.core.somaxconn", "16"));
        var proxy = await lab.StartProxyAsync();

        // Warm the cache: the first connection probes and learns the server is TCP-only.
        var first = await lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, Path.Combine(lab.Directory, "first.out"));
        Assert.That(first.ExitCode, Is.Zero, first.StdErr);

        await SendSpoofedSynsAsync(lab.Topology.Client, v6);
        var before = await NetstatAsync(lab.Topology.Proxy);
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (before["TcpExtSyncookiesSent"] == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            before = await NetstatAsync(lab.Topology.Proxy);
        }

        Assert.That(before["TcpExtSyncookiesSent"], Is.Positive, "the flood filled the listener's SYN queue");
        var results = new List<string>();
        for (int i = 0; i < Downloads; i++)
        {
            var output = Path.Combine(lab.Directory, $"download{i}.out");
            var curl = await lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(20));
            results.Add($"{curl.ExitCode} {curl.StdOut} {curl.StdErr.Trim()}");
            Assert.That(curl.ExitCode, Is.Zero, string.Join('\n', results));
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        }

        var after = await NetstatAsync(lab.Topology.Proxy);
        TestContext.Progress.WriteLine($"v6={v6}: cookies sent {after["TcpExtSyncookiesSent"]}, received {after["TcpExtSyncookiesRecv"] - before["TcpExtSyncookiesRecv"]} "
            + $"during the downloads, failed {after["TcpExtSyncookiesFailed"]}; downloads: {string.Join(" | ", results)}");
        Assert.That(after["TcpExtSyncookiesRecv"] - before["TcpExtSyncookiesRecv"], Is.GreaterThanOrEqualTo(Downloads),
            "every download's handshake completed through a SYN cookie (the queue stayed full)");
        await proxy.StopAsync(ProxyLab.Timeout);
        Assert.That(ProxyLab.Counter(proxy, "hook_failures"), Is.Zero);
    }

    /// <summary>
    /// <see cref="SpoofedSyns"/> MPTCP SYNs (MP_CAPABLE v1) to the server's port 80 from addresses on the client's first
    /// path that no host answers for, in bursts of 20 every 50 ms: they stay half-open in the proxy's listener.
    /// </summary>
    private static async Task SendSpoofedSynsAsync(NetNamespace client, bool v6)
    {
        using var raw = await client.RunInNamespaceAsync(() =>
            new Socket(v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Raw, ProtocolType.Raw));
        var server = IPAddress.Parse(TwoPathTopology.ServerAddress(v6));
        var random = new Random(12);
        for (int i = 0; i < SpoofedSyns; i++)
        {
            var source = v6
                ? IPAddress.Parse($"2001:db8:1::{0x1000 + (i % 200):x}")
                : IPAddress.Parse($"198.18.1.{50 + (i % 200)}");
            raw.SendTo(Syn(source, server, (ushort)random.Next(20000, 60000), (uint)random.Next()), new IPEndPoint(server, 0));
            if (i % 20 == 19)
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>An IPv4 or IPv6 SYN with MSS and MP_CAPABLE v1 (HMAC-SHA256), checksums filled.</summary>
    private static byte[] Syn(IPAddress source, IPAddress destination, ushort sourcePort, uint sequence)
    {
        bool v6 = source.AddressFamily == AddressFamily.InterNetworkV6;
        ReadOnlySpan<byte> options = [2, 4, 0x05, 0xb4, 30, 4, 0x01, 0x01];
        int ipHeader = v6 ? 40 : 20;
        var packet = new byte[ipHeader + TcpHeader.MinLength + options.Length];
        if (v6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(TcpHeader.MinLength + options.Length));
            packet[6] = IpPacket.ProtocolTcp;
            packet[7] = 64;
            source.GetAddressBytes().CopyTo(packet, 8);
            destination.GetAddressBytes().CopyTo(packet, 24);
        }
        else
        {
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
            packet[6] = 0x40;
            packet[8] = 64;
            packet[9] = IpPacket.ProtocolTcp;
            source.GetAddressBytes().CopyTo(packet, 12);
            destination.GetAddressBytes().CopyTo(packet, 16);
        }

        var tcp = packet.AsSpan(ipHeader);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 80);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[12..], (ushort)((((TcpHeader.MinLength + options.Length) / 4) << 12) | (int)TcpFlags.Syn));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 64240);
        options.CopyTo(tcp[TcpHeader.MinLength..]);
        Assert.That(InternetChecksum.TryFillChecksums(packet), Is.EqualTo(WireError.None));
        return packet;
    }

    /// <summary>The namespace's absolute SNMP/netstat counters (nstat -a, history untouched), zeros included.</summary>
    private static async Task<IReadOnlyDictionary<string, long>> NetstatAsync(NetNamespace ns)
    {
        var text = await ns.CheckAsync("nstat", ["-asz"], ProxyLab.Timeout);
        var counters = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
            {
                counters[parts[0]] = value;
            }
        }

        return counters;
    }
}
