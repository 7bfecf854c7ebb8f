using System.Net;
using System.Text.RegularExpressions;
using ProxySelection.Lab;
using ProxySelection.Wire;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Spec §7.8.1 on the real kernel: the downgrade holder announces an address of its own (Proxy:AnnounceAddresses) with
/// ADD_ADDR; an MPTCP client whose only path to the server is through the proxy joins that address over another link,
/// and the join ends at the holder. On drain the proxy sends REMOVE_ADDR and its endpoint goes.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed partial class ProxyAnnounceTests
{
    private const int Size = 48 * 1024 * 1024;

    private const string Announced = TwoPathTopology.ProxyPath2V4;

    [TestCase(false)]
    [TestCase(true)]
    public async Task AnnouncedAddress_ClientJoinsTheHolderThere_AndDrainWithdrawsItWithRemoveAddr(bool v6)
    {
        // Path 2's proxy address: reachable from the client over its second link only.
        string announced = v6 ? TwoPathTopology.ProxyPath2V6 : TwoPathTopology.ProxyPath2V4;
        string client1 = v6 ? TwoPathTopology.ClientPath1V6 : TwoPathTopology.ClientPath1V4;
        string client2 = v6 ? TwoPathTopology.ClientPath2V6 : TwoPathTopology.ClientPath2V4;
        await using var lab = await ProxyLab.StartAsync();
        // The client opens no subflow of its own: only an ADD_ADDR can give it a second one.
        await lab.Topology.Client.IpBatchAsync(["mptcp endpoint flush", "mptcp limits set subflow 2 add_addr_accepted 1"]).WaitAsync(ProxyLab.Timeout);
        var sha = lab.WriteFile("file.bin", Size);
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync("--set", $"Proxy:AnnounceAddresses={announced}", "--set", "Proxy:DrainTimeout=20s");
        var endpoints = await EndpointsAsync(lab);
        // Control segments only: ADD_ADDR and REMOVE_ADDR ride on the proxy's pure ACKs, joins and closes are SYN, FIN, RST.
        // Leaving out the download's data and the client's ACKs keeps tcpdump from dropping packets on a loaded machine.
        // (libpcap has no tcp[] for IPv6: there the flags are byte 13 of a TCP header right after the 40-byte IPv6 header.)
        string flags = v6 ? "ip6[53] & 0x07 != 0" : "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0";
        string control = $"tcp port 80 and less 200 and (not (src host {client1} or src host {client2}) or {flags})";
        var path1 = await lab.Topology.Client.StartCaptureAsync(TwoPathTopology.ClientPath1, Path.Combine(lab.Directory, "path1.pcap"), control);
        var path2 = await lab.Topology.Client.StartCaptureAsync(TwoPathTopology.ClientPath2, Path.Combine(lab.Directory, "path2.pcap"), control);

        // Rate-limited so the connection is still held when the drain starts: about 12 s, against the join, two `ss`
        // polls and a SIGTERM in between (a few seconds on a loaded 2-vCPU machine); asserted below, not assumed.
        var output = Path.Combine(lab.Directory, "file.out");
        var download = lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(60), "--limit-rate", "4M");
        var join = await ProxyLab.WaitForLineAsync(proxy, "syn ", $"-> {new IPEndPoint(IPAddress.Parse(announced), 80)} MpJoin");
        var subflows = await ExtraSubflowAsync(lab.Topology.Client, "dport = :80");
        var holder = await ExtraSubflowAsync(lab.Topology.Proxy, "sport = :80");
        bool heldAtTheDrain = !download.IsCompleted;
        await proxy.StopAsync(TimeSpan.FromSeconds(60));
        var curl = await download.WaitAsync(TimeSpan.FromSeconds(90));
        var (onPath1, onPath2) = await Captures.StopBothAsync(path1, path2);
        var after = await EndpointsAsync(lab);
        TestContext.Progress.WriteLine($"{proxy.Output}\nendpoints before: {endpoints}\nclient subflows: {subflows}\nholder: {holder}\ncapture loss: {Captures.ReportedLoss(path1)} + {Captures.ReportedLoss(path2)}");

        var options = Captures.Segments(onPath1).Concat(Captures.Segments(onPath2)).SelectMany(Mptcp).ToList();
        var addAddr = options.Where(o => o.Segment.Destination == client1 && o.Option.Subtype == MptcpSubtype.AddAddr && !o.Option.AddAddr.Echo)
            .Select(o => (Address: new IPAddress(o.Option.AddAddr.Address), o.Option.AddAddr.HasPort, o.Option.AddAddr.AddressId)).ToList();
        var removeAddr = options.Where(o => o.Option.Subtype == MptcpSubtype.RemoveAddr && o.Segment.Source != client1 && o.Segment.Source != client2).ToList();
        var joins = Captures.Segments(onPath2, Captures.IsSyn).Where(s => s.Destination == announced).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(heldAtTheDrain, Is.True, "the download was still running when the drain began");
            Assert.That(endpoints, Does.Contain($"\"address\":\"{announced}\"").And.Contain("\"signal\":true"));
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha), "the transfer went on over the first subflow after the withdrawal");
            Assert.That(addAddr.Select(a => (a.Address.ToString(), a.HasPort)), Has.Some.EqualTo((announced, false)), "ADD_ADDR of the proxy's own address, no port: joins go to S's port");
            Assert.That(joins.Select(j => (j.Source, j.DestinationPort)), Has.Some.EqualTo((client2, (ushort)80)), "the client's MP_JOIN to the announced address");
            Assert.That(join, Does.EndWith(": InterceptJoin (JoinTokenOwned)").Or.EndWith(": Wait for the accept (JoinTokenForeign)"), "the join is taken at once (the accept was done) or parked until it is");
            Assert.That(subflows, Does.Match(@"subflows:1\b"), "MPTCP_INFO at the client: one extra subflow besides the initial one");
            Assert.That(subflows, Does.Contain("add_addr_accepted:1"));
            Assert.That(removeAddr.Select(r => r.Option.RemoveAddr.AddressIds.ToArray()), Has.Some.EqualTo(new[] { addAddr.FirstOrDefault().AddressId }), "REMOVE_ADDR of the announced id");
            Assert.That(holder, Does.Match(@"subflows:1\b"), "MPTCP_INFO at the holder: the join joined the held connection");
            // The relay samples its subflow count, and the withdrawal closes the second one: subflows= may read 1 or 2 here.
            Assert.That(ProxyLab.Lines(proxy, "relay ").Single(), Does.Contain("Completed"));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: withdrew "), Has.Count.EqualTo(1));
            Assert.That(after, Is.EqualTo("[]"), "the proxy's endpoint is gone");
            Assert.That(Captures.Segments(onPath2).Any(s => s.Source == client2 && s.Destination == announced
                && (s.Flags & (TcpFlags.Fin | TcpFlags.Rst)) != 0), Is.True, "the client closed its subflow to the withdrawn address");
        });
    }

    /// <summary>Killed, the proxy leaves its endpoint; <c>proxysel cleanup</c> removes it and only it; a restart announces again.</summary>
    [Test]
    public async Task KilledProxy_CleanupRemovesItsEndpointOnly_AndAStartIsIdempotent()
    {
        await using var lab = await ProxyLab.StartAsync();
        // The operator's own endpoint: never the proxy's to remove.
        await lab.Topology.Proxy.IpAsync("mptcp", "endpoint", "add", TwoPathTopology.ProxyUpV4, "subflow").WaitAsync(ProxyLab.Timeout);
        var operators = $"\"address\":\"{TwoPathTopology.ProxyUpV4}\"";
        var proxy = await lab.StartProxyAsync("--set", $"Proxy:AnnounceAddresses={Announced}");
        Assert.That(proxy.Signal(9), Is.True);
        Assert.That(await proxy.WaitForExitAsync(ProxyLab.Timeout), Is.EqualTo(128 + 9));
        var left = await EndpointsAsync(lab);

        var restarted = await lab.StartProxyAsync("--set", $"Proxy:AnnounceAddresses={Announced}");
        var again = await EndpointsAsync(lab);
        Assert.That(restarted.Signal(9), Is.True);
        Assert.That(await restarted.WaitForExitAsync(ProxyLab.Timeout), Is.EqualTo(128 + 9));
        var cleanup = await lab.CleanupAsync();
        var cleaned = await EndpointsAsync(lab);
        var twice = await lab.CleanupAsync();

        Assert.Multiple(() =>
        {
            Assert.That(left, Does.Contain($"\"address\":\"{Announced}\"").And.Contain(operators), "SIGKILL left the endpoint");
            Assert.That(Regex.Matches(again, Regex.Escape(Announced)), Has.Count.EqualTo(1), "the restart replaced its leftover, no duplicate");
            Assert.That(cleanup.ExitCode, Is.Zero, cleanup.StdErr);
            Assert.That(cleaned, Does.Not.Contain(Announced).And.Contain(operators), "cleanup removed the proxy's endpoint and kept the operator's");
            Assert.That(twice.ExitCode, Is.Zero, "cleanup is idempotent: " + twice.StdErr);
        });
    }

    [TestCase("198.18.9.9", "is not an address of this host's interfaces")]
    [TestCase(TwoPathTopology.ServerV4, "is not an address of this host's interfaces")]
    public async Task AnnounceAddressNotOfThisHost_StartRefusedNamingTheKey(string address, string reason)
    {
        await using var lab = await ProxyLab.StartAsync();

        var run = await lab.Topology.Proxy.RunAsync("dotnet", [ProxyLab.ProxyselDll, "run", "--ports", "80", "--set", $"Proxy:AnnounceAddresses={address}"], ProxyLab.Timeout);

        Assert.That(run.ExitCode, Is.Not.Zero);
        Assert.That(run.StdOut + run.StdErr, Does.Contain($"Proxy:AnnounceAddresses: {address} {reason}"));
        Assert.That(await EndpointsAsync(lab), Is.EqualTo("[]"));
    }

    private static async Task<string> EndpointsAsync(ProxyLab lab) =>
        (await lab.Topology.Proxy.CheckAsync("ip", ["-j", "mptcp", "endpoint", "show"], ProxyLab.Timeout)).Trim();

    /// <summary>The MPTCP sockets matching <paramref name="filter"/> as <c>ss -M</c> shows them once one has an extra subflow (subflows: counts the extra ones).</summary>
    private static async Task<string> ExtraSubflowAsync(NetNamespace ns, string filter)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        string shown = "";
        while (DateTime.UtcNow < deadline)
        {
            shown = await ns.CheckAsync("ss", ["-HMni", filter], ProxyLab.Timeout);
            if (SubflowsRegex().IsMatch(shown))
            {
                return shown;
            }

            await Task.Delay(50);
        }

        return shown;
    }

    private static List<(CapturedSegment Segment, MptcpOption Option)> Mptcp(CapturedSegment segment)
    {
        var found = new List<(CapturedSegment, MptcpOption)>();
        if (TcpHeader.TryParse(segment.Bytes, out var tcp) != WireError.None)
        {
            return found;
        }

        var options = tcp.Options;
        foreach (var option in new TcpOptionReader(options))
        {
            if (option.Kind == TcpOptionKind.Mptcp && MptcpOption.TryParse(option.Slice(options), out var mptcp) == WireError.None)
            {
                found.Add((segment, mptcp));
            }
        }

        return found;
    }

    [GeneratedRegex(@"subflows:1\b")]
    private static partial Regex SubflowsRegex();
}
