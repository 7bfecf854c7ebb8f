using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Interception.Rules;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>What a handler saw of one queued packet (copied out of the receive buffer).</summary>
internal sealed record SeenPacket(uint Id, byte Family, NetfilterHook Hook, uint Mark, uint InDevice, byte[] Payload);

/// <summary>
/// The two-path lab with the interception ruleset applied in the proxy namespace, plus socket helpers. Everything
/// created here is removed by <see cref="DisposeAsync"/> (the lab deletes the namespaces).
/// </summary>
internal sealed class InterceptionScenario : IAsyncDisposable
{
    public const ushort Port = 8080;
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    private readonly List<IDisposable> owned = [];

    private InterceptionScenario(ProxySelection.Lab.Lab lab, TwoPathTopology topology, InterceptionRuleset rules)
    {
        Lab = lab;
        Topology = topology;
        Rules = rules;
    }

    public ProxySelection.Lab.Lab Lab { get; }

    public TwoPathTopology Topology { get; }

    public InterceptionRuleset Rules { get; }

    public ConcurrentQueue<SeenPacket> Seen { get; } = new();

    public static async Task<InterceptionScenario> CreateAsync(bool applyRules = true)
    {
        var lab = ProxySelection.Lab.Lab.Create();
        try
        {
            var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
            var rules = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [Port], QueueNumber = 3 },
                new ProcessCommandRunner(t.Proxy.Name));
            if (applyRules)
            {
                await rules.ApplyAsync().WaitAsync(Timeout);
            }

            return new InterceptionScenario(lab, t, rules);
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    public static IPAddress ServerAddress(bool v6) => IPAddress.Parse(TwoPathTopology.ServerAddress(v6));

    public static IPAddress ClientAddress(bool v6) => IPAddress.Parse(v6 ? TwoPathTopology.ClientPath1V6 : TwoPathTopology.ClientPath1V4);

    /// <summary>Opens an NFQUEUE client on queue 3 inside the proxy namespace.</summary>
    public async Task<NfqueueClient> OpenQueueAsync(uint maxQueueLength = 1024)
    {
        var q = await Topology.Proxy.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions
        {
            QueueNumber = 3,
            MaxQueueLength = maxQueueLength,
        })).WaitAsync(Timeout);
        owned.Add(q);
        return q;
    }

    /// <summary>A listener on any address, port <see cref="Port"/>, in <paramref name="ns"/>; transparent if asked.</summary>
    public async Task<Socket> ListenAsync(NetNamespace ns, bool v6, bool transparent = false)
    {
        var s = await ns.RunInNamespaceAsync(() =>
        {
            var l = new Socket(v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            if (v6)
            {
                l.DualMode = false;
            }

            if (transparent)
            {
                // IP_TRANSPARENT (SOL_IP 0, 19) / IPV6_TRANSPARENT (SOL_IPV6 41, 75): TPROXY only hands SYNs to such sockets.
                l.SetRawSocketOption(v6 ? 41 : 0, v6 ? 75 : 19, BitConverter.GetBytes(1));
            }

            l.Bind(new IPEndPoint(v6 ? IPAddress.IPv6Any : IPAddress.Any, Port));
            l.Listen();
            return l;
        }).WaitAsync(Timeout);
        owned.Add(s);
        return s;
    }

    /// <summary>Connects from the client namespace to the server's address and port <see cref="Port"/>, accepts on
    /// <paramref name="listener"/>, and checks one message each way. Returns (client side, accepted side).</summary>
    public async Task<(Socket Client, Socket Accepted)> ConnectAndExchangeAsync(Socket listener, bool v6)
    {
        var client = await Topology.Client.RunInNamespaceAsync(() =>
            new Socket(v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)).WaitAsync(Timeout);
        owned.Add(client);
        using var cts = new CancellationTokenSource(Timeout);
        var accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(new IPEndPoint(ServerAddress(v6), Port), cts.Token);
        var accepted = await accept.WaitAsync(Timeout);
        owned.Add(accepted);

        await client.SendAsync("ping"u8.ToArray(), cts.Token);
        await ExpectAsync(accepted, "ping", cts.Token);
        await accepted.SendAsync("pong"u8.ToArray(), cts.Token);
        await ExpectAsync(client, "pong", cts.Token);
        return (client, accepted);
    }

    /// <summary>Copies a packet for later assertions.</summary>
    public void Record(in NfqueuePacket p) =>
        Seen.Enqueue(new SeenPacket(p.PacketId, p.Family, p.Hook, p.Mark, p.InDeviceIndex, p.Payload.ToArray()));

    public async ValueTask DisposeAsync()
    {
        foreach (var d in owned)
        {
            d.Dispose();
        }

        try
        {
            await Rules.RemoveAsync().WaitAsync(Timeout);
        }
        finally
        {
            await Lab.DisposeAsync();
        }
    }

    private static async Task ExpectAsync(Socket s, string text, CancellationToken cancellationToken)
    {
        var buffer = new byte[64];
        var got = 0;
        while (got < text.Length)
        {
            var n = await s.ReceiveAsync(buffer.AsMemory(got), cancellationToken);
            if (n == 0)
            {
                break;
            }

            got += n;
        }

        Assert.That(System.Text.Encoding.ASCII.GetString(buffer, 0, got), Is.EqualTo(text));
    }
}
