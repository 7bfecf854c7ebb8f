using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using ProxySelection.Engine.Fronts;
using ProxySelection.IntegrationTests.Hosting;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Relay;

namespace ProxySelection.IntegrationTests.Socks;

/// <summary>
/// RFC 8803 on the real kernel: a Convert client written here (an MPTCP socket with TCP_FASTOPEN_CONNECT, so the
/// Convert message and the HTTP request ride in the SYN) in the client namespace of the two-path lab,
/// <c>proxysel run --mode socks --convert</c> in the proxy namespace, nginx (TCP) in the server namespace.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed partial class ConvertTests
{
    private const int Port = 5124;
    private const int Size = 16 * 1024 * 1024;

    /// <summary>
    /// 0-RTT (the Convert message in the SYN) is measured over one client path; the second path is tested with the
    /// message in the first data segment. Measured here (Linux 6.18): an MPTCP connection opened with TFO data whose
    /// client then adds an MP_JOIN subflow stalls for 12-17 s with 60-83 MPTCP-level retransmissions at the proxy
    /// (MPTcpExtMPTCPRetrans), where either alone finishes 16 MB in 0.2-0.4 s; that is the kernel's, not the converter's.
    /// </summary>
    [TestCase(true, TestName = "Convert_ZeroRttFromAnMptcpClient_DownloadIntactMessageInTheSyn")]
    [TestCase(false, TestName = "Convert_MptcpClientWithTwoPaths_DownloadIntactTwoSubflowsTcpServerLeg")]
    public async Task Convert_MptcpClient_DownloadIntact(bool fastOpen)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        // TFO: the client sends data in its SYN without a cookie (1 | 4); the proxy takes it without one (2 | 0x200).
        await lab.Topology.Client.SysctlAsync(("net.ipv4.tcp_fastopen", "5"));
        await lab.Topology.Proxy.SysctlAsync(("net.ipv4.tcp_fastopen", "514"));
        if (fastOpen)
        {
            // One path: see the summary.
            await lab.Topology.Client.IpAsync("mptcp", "endpoint", "flush");
        }

        var proxy = await StartConvertProxyAsync(lab);
        var before = await LabNetwork.ReadCountersAsync(lab.Topology.Proxy, "TcpExtTCPFastOpenPassive");

        var watch = System.Diagnostics.Stopwatch.StartNew();
        var (header, response) = await FetchAsync(lab, new IPEndPoint(IPAddress.Parse(TwoPathTopology.ServerV4), 80), "/file.bin", fastOpen);
        TestContext.Progress.WriteLine($"convert fetch of {Size} bytes (fastOpen={fastOpen}): {watch.ElapsedMilliseconds} ms");
        var relay = await ProxyLab.WaitForLineAsync(proxy, "convert-relay ", "Completed");
        var after = await LabNetwork.ReadCountersAsync(lab.Topology.Proxy, "TcpExtTCPFastOpenPassive");
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(header, Is.EqualTo(new byte[] { 1, 1, 0x22, 0x63 }), "a Convert message without TLVs: connected");
            Assert.That(Encoding.ASCII.GetString(response, 0, Math.Min(response.Length, 12)), Is.EqualTo("HTTP/1.0 200").Or.EqualTo("HTTP/1.1 200"));
            Assert.That(Convert.ToHexStringLower(SHA256.HashData(Body(response))), Is.EqualTo(sha));
            Assert.That(ProxyLab.Lines(proxy, "convert "), Has.Some.Contains($"-> {TwoPathTopology.ServerV4}:80: Succeeded"));
            Assert.That(relay, Does.Contain("client=Active").And.Contains("upstream=NotMptcp"), "client leg MPTCP, server leg plain TCP");
            Assert.That(int.Parse(SubflowsRegex().Match(relay).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), Is.EqualTo(fastOpen ? 1 : 2));
            Assert.That(after["TcpExtTCPFastOpenPassive"] - before["TcpExtTCPFastOpenPassive"], Is.EqualTo(fastOpen ? 1 : 0),
                fastOpen ? "the Convert message arrived in the SYN (0-RTT)" : "no TFO asked for");
            Assert.That(ProxyLab.Lines(proxy, "convert listening "), Has.Some.Contains("transport=mptcp+tfo"));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: convert "), Has.Some.Contains("connected=1"));
        });
    }

    [Test]
    public async Task Convert_RefusedAndMalformedAndInfo_RfcAnswerThenClose()
    {
        await using var lab = await ProxyLab.StartAsync();
        await lab.StartNginxAsync();
        var proxy = await StartConvertProxyAsync(lab);

        var refused = await ExchangeAsync(lab, ConvertHandshake.ConnectMessage(new IPEndPoint(IPAddress.Parse(TwoPathTopology.ServerV4), 81)));
        var version = await ExchangeAsync(lab, [2, 6, 0x22, 0x63]);
        var info = await ExchangeAsync(lab, [1, 2, 0x22, 0x63, 1, 1, 0, 0]);
        bool running = !proxy.HasExited;
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(refused, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 96, 0 }), "Error TLV Connection Reset");
            Assert.That(version, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 0, 1 }), "Error TLV Unsupported Version, the value naming version 1");
            Assert.That(info, Is.EqualTo(new byte[] { 1, 3, 0x22, 0x63, 21, 2, 0, 0, 30, 0, 0, 0 }), "Supported TCP Extensions TLV: MPTCP (kind 30)");
            Assert.That(running, Is.True);
            Assert.That(ProxyLab.Lines(proxy, "proxysel: convert "), Has.Some.Contains("handshake_failed=1").And.Contains("connect_failed=1"));
        });
    }

    private static Task<LabProcess> StartConvertProxyAsync(ProxyLab lab) =>
        ProxyLab.StartProxysel(lab.Topology.Proxy, ["--mode", "socks", "--socks", $"{TwoPathTopology.ProxyPath1V4}:1080",
            "--convert", $"{TwoPathTopology.ProxyPath1V4}:{Port}", "--set", "Proxy:ControlSocket=none"]).WaitRunningAsync();

    /// <summary>
    /// The Convert client: an MPTCP socket, with TCP_FASTOPEN_CONNECT when <paramref name="fastOpen"/> so that its first
    /// write (the Convert message and an HTTP/1.0 request) goes out in the SYN. Returns the Convert header and everything after it up to the end.
    /// </summary>
    private static async Task<(byte[] Header, byte[] Response)> FetchAsync(ProxyLab lab, IPEndPoint server, string path, bool fastOpen)
    {
        using var socket = await lab.Topology.Client.RunInNamespaceAsync(() =>
        {
            var s = SocketFactory.CreateMptcp(AddressFamily.InterNetwork);
            if (fastOpen)
            {
                s.SetRawSocketOption(6 /* IPPROTO_TCP */, 30 /* TCP_FASTOPEN_CONNECT */, BitConverter.GetBytes(1));
            }

            return s;
        });
        using var timeout = new CancellationTokenSource(ProxyLab.Timeout);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(TwoPathTopology.ProxyPath1V4), Port), timeout.Token);
        byte[] request = [.. ConvertHandshake.ConnectMessage(server), .. Encoding.ASCII.GetBytes($"GET {path} HTTP/1.0\r\nHost: {server.Address}\r\n\r\n")];
        await socket.SendAsync(request, SocketFlags.None, timeout.Token);
        using var received = new MemoryStream();
        var buffer = new byte[256 * 1024];
        int read;
        while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
        {
            received.Write(buffer, 0, read);
        }

        var all = received.ToArray();
        int length = all.Length >= 2 ? all[1] * 4 : all.Length;
        return (all[..Math.Min(length, all.Length)], all[Math.Min(length, all.Length)..]);
    }

    private static byte[] Body(byte[] response)
    {
        int end = response.AsSpan().IndexOf("\r\n\r\n"u8);
        return end < 0 ? [] : response[(end + 4)..];
    }

    /// <summary>Sends one message over plain TCP; returns what the proxy sent before it closed.</summary>
    private static async Task<byte[]> ExchangeAsync(ProxyLab lab, byte[] message)
    {
        using var socket = await lab.Topology.Client.RunInNamespaceAsync(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        using var timeout = new CancellationTokenSource(ProxyLab.Timeout);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(TwoPathTopology.ProxyPath1V4), Port), timeout.Token);
        await socket.SendAsync(message, SocketFlags.None, timeout.Token);
        using var received = new MemoryStream();
        var buffer = new byte[64];
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
            {
                received.Write(buffer, 0, read);
            }
        }
        catch (SocketException)
        {
            // A reset after the reply: what arrived before it counts.
        }

        return received.ToArray();
    }

    [GeneratedRegex(@"subflows=(\d+)")]
    private static partial Regex SubflowsRegex();
}
