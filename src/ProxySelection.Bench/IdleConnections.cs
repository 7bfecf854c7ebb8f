using System.Net;
using System.Net.Sockets;
using ProxySelection.Lab;
using ProxySelection.Relay;

namespace ProxySelection.Bench;

/// <summary>
/// The memory figure: open many idle connections through a subject and read the relay's RSS growth. The server end
/// is a listener in this process (server namespace) that accepts and holds; the client sockets are created in the
/// client namespace. Every wait is bounded.
/// </summary>
internal sealed class IdleConnections : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly List<Socket> _accepted = [];
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;

    private IdleConnections(Socket listener)
    {
        _listener = listener;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public static async Task<IdleConnections> StartAsync(NetNamespace server, IPEndPoint endpoint)
    {
        var listener = await server.RunInNamespaceAsync(() =>
        {
            var s = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            s.Bind(endpoint);
            s.Listen(4096);
            return s;
        }).ConfigureAwait(false);
        return new IdleConnections(listener);
    }

    private int Accepted
    {
        get
        {
            lock (_gate)
            {
                return _accepted.Count;
            }
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                var s = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
                lock (_gate)
                {
                    _accepted.Add(s);
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException)
            {
                // EMFILE and the like: back off, the measurement's wait will time out and say so.
                await Task.Delay(50, CancellationToken.None).ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
        }
    }

    /// <summary>
    /// RSS growth of <paramref name="relayGroup"/> per connection, after one warm-up connection; null (with the reason as
    /// the third value) when not all connections arrived in time.
    /// </summary>
    public async Task<(double? BytesPerConnection, int Held, string? Error)> MeasureAsync(NetNamespace client, IPEndPoint target, bool mptcp,
        int relayGroup, int count)
    {
        // A readiness probe through HAProxy or socat reaches the server a moment after the subject started: let it
        // arrive (and be dropped) so that it is not counted as held.
        await Task.Delay(300).ConfigureAwait(false);
        DropAccepted();
        var clients = new List<Socket>();
        try
        {
            clients.AddRange(await ConnectAsync(client, target, mptcp, 1).ConfigureAwait(false));
            if (!await WaitAcceptedAsync(1, TimeSpan.FromSeconds(10)).ConfigureAwait(false))
            {
                return (null, 0, "the warm-up connection did not arrive");
            }
            await Task.Delay(300).ConfigureAwait(false);
            long before = ProcessStats.ResidentBytes(relayGroup);
            for (int done = 0; done < count;)
            {
                int batch = Math.Min(256, count - done);
                clients.AddRange(await ConnectAsync(client, target, mptcp, batch).ConfigureAwait(false));
                done += batch;
            }
            bool all = await WaitAcceptedAsync(count + 1, TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            int held = Accepted - 1;
            await Task.Delay(500).ConfigureAwait(false);
            long after = ProcessStats.ResidentBytes(relayGroup);
            return all
                ? ((after - before) / (double)count, held, null)
                : (null, held, $"only {held} of {count} connections reached the server within 30 s");
        }
        finally
        {
            foreach (var s in clients)
            {
                s.Dispose();
            }
            DropAccepted();
        }
    }

    /// <summary>Connects <paramref name="count"/> sockets; one that fails (a SYN lost to a full backlog under load) is
    /// replaced by a fresh one once, so the figure is not lost to a few slow handshakes.</summary>
    private static async Task<List<Socket>> ConnectAsync(NetNamespace client, IPEndPoint target, bool mptcp, int count)
    {
        var connected = new List<Socket>(count);
        for (int attempt = 0; attempt < 2 && connected.Count < count; attempt++)
        {
            int wanted = count - connected.Count;
            var sockets = await client.RunInNamespaceAsync(() =>
            {
                var list = new List<Socket>(wanted);
                for (int i = 0; i < wanted; i++)
                {
                    list.Add(mptcp ? SocketFactory.CreateMptcp(target.AddressFamily) : new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp));
                }
                return list;
            }).ConfigureAwait(false);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var results = await Task.WhenAll(sockets.Select(async s =>
            {
                try
                {
                    await s.ConnectAsync(target, cts.Token).ConfigureAwait(false);
                    return true;
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException)
                {
                    return false;
                }
            })).ConfigureAwait(false);
            for (int i = 0; i < sockets.Count; i++)
            {
                if (results[i])
                {
                    connected.Add(sockets[i]);
                }
                else
                {
                    sockets[i].Dispose();
                }
            }
        }
        return connected;
    }

    private async Task<bool> WaitAcceptedAsync(int count, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (Accepted < count)
        {
            if (cts.IsCancellationRequested)
            {
                return false;
            }
            await Task.Delay(20, CancellationToken.None).ConfigureAwait(false);
        }
        return true;
    }

    private void DropAccepted()
    {
        List<Socket> drop;
        lock (_gate)
        {
            drop = [.. _accepted];
            _accepted.Clear();
        }
        foreach (var s in drop)
        {
            s.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _acceptLoop.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        DropAccepted();
        _stop.Dispose();
    }
}
