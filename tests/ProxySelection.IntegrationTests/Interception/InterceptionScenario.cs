using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Interception.Rules;
using ProxySelection.Lab;
using ProxySelection.Relay;

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

    /// <summary>The ruleset's default intercept mark (TPROXY) and egress mark (own SYN/SYN-ACK queued at POSTROUTING).</summary>
    public const uint InterceptMark = 0x1;
    public const uint EgressMark = 0x2;
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
    public async Task<NfqueueClient> OpenQueueAsync(uint maxQueueLength = 1024, ILogger? logger = null)
    {
        var q = await Topology.Proxy.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions
        {
            QueueNumber = 3,
            MaxQueueLength = maxQueueLength,
        }, logger: logger)).WaitAsync(Timeout);
        owned.Add(q);
        return q;
    }

    /// <summary>Runs <paramref name="handler"/> on <paramref name="queue"/> until the returned loop is stopped.</summary>
    public static QueueLoop Run(NfqueueClient queue, NfqueuePacketHandler handler, Action<NfqueueException>? onHandlerError = null) =>
        new(queue, handler, onHandlerError);

    /// <summary>Gives a client SYN (PREROUTING) the intercept mark, so TPROXY hands it to the transparent listener;
    /// false for any other packet, which the caller decides on.</summary>
    public static bool TryIntercept(NfqueueClient queue, in NfqueuePacket p)
    {
        if (p.Hook != NetfilterHook.PreRouting)
        {
            return false;
        }

        queue.AcceptWithMark(p.PacketId, NfqueueClient.MaskedMark(p.Mark, InterceptMark, InterceptMark));
        return true;
    }

    /// <summary>An unconnected stream socket created in <paramref name="ns"/> (so it lives there): TCP, or MPTCP if
    /// asked; with SO_MARK when <paramref name="mark"/> is not 0. Disposed with the scenario.</summary>
    public async Task<Socket> SocketAsync(NetNamespace ns, bool v6, uint mark = 0, bool mptcp = false)
    {
        var s = await ns.RunInNamespaceAsync(() => NewSocket(v6, mark, mptcp)).WaitAsync(Timeout);
        owned.Add(s);
        return s;
    }

    /// <summary>A listener on any address, port <see cref="Port"/>, in <paramref name="ns"/>; transparent, marked or
    /// MPTCP if asked.</summary>
    public async Task<Socket> ListenAsync(NetNamespace ns, bool v6, bool transparent = false, uint mark = 0, bool mptcp = false)
    {
        var s = await ns.RunInNamespaceAsync(() =>
        {
            var l = NewSocket(v6, mark, mptcp);
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
        var client = await SocketAsync(Topology.Client, v6);
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

    private static Socket NewSocket(bool v6, uint mark, bool mptcp)
    {
        var family = v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
        var s = mptcp ? SocketFactory.CreateMptcp(family) : new Socket(family, SocketType.Stream, ProtocolType.Tcp);
        if (mark != 0)
        {
            s.SetRawSocketOption(1 /* SOL_SOCKET */, 36 /* SO_MARK */, BitConverter.GetBytes(mark));
        }

        return s;
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

/// <summary>A queue's receive loop on its own thread; <see cref="StopAsync"/> (or disposal) cancels it and waits.</summary>
internal sealed class QueueLoop : IAsyncDisposable
{
    private readonly CancellationTokenSource stop = new();
    private readonly Task loop;
    private bool disposed;

    public QueueLoop(NfqueueClient queue, NfqueuePacketHandler handler, Action<NfqueueException>? onHandlerError) =>
        loop = queue.RunAsync(handler, stop.Token, onHandlerError);

    /// <summary>Cancels the loop and waits for it to end (a faulted loop rethrows). Safe to call again.</summary>
    public async Task StopAsync()
    {
        if (!disposed)
        {
            await stop.CancelAsync();
        }

        await loop.WaitAsync(InterceptionScenario.Timeout);
    }

    public async ValueTask DisposeAsync()
    {
        if (disposed)
        {
            return;
        }

        try
        {
            await StopAsync();
        }
        finally
        {
            disposed = true;
            stop.Dispose();
        }
    }
}
