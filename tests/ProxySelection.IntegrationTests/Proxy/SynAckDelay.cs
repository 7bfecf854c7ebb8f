using System.Collections.Concurrent;
using System.Diagnostics;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// A slow server: every SYN/ACK the server namespace sends from port 80 is held in an NFQUEUE for a fixed delay, then
/// accepted unchanged. Stands in for <c>tc netem</c>, which this kernel lacks (no sch_netem).
/// </summary>
internal sealed class SynAckDelay : IAsyncDisposable
{
    private const ushort Queue = 7;
    private static readonly string[] Rule = ["OUTPUT", "-p", "tcp", "--sport", "80", "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "NFQUEUE", "--queue-num", "7"];

    private readonly NetNamespace _ns;
    private readonly NfqueueClient _queue;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly BlockingCollection<(long Due, uint Id)> _due = [];
    private readonly Thread _releaser;
    private int _delayed;

    private SynAckDelay(NetNamespace ns, NfqueueClient queue, TimeSpan delay)
    {
        _ns = ns;
        _queue = queue;
        _loop = queue.RunAsync((in NfqueuePacket packet) =>
        {
            Interlocked.Increment(ref _delayed);
            _due.Add((Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency), packet.PacketId));
        }, _stop.Token);
        // Verdicts from one dedicated thread on a monotonic clock: pool timers run late on a loaded machine, and a
        // SYN/ACK held much longer than the delay would make the client retransmit for the test's own reasons.
        _releaser = new Thread(Release) { IsBackground = true, Name = "synack-delay" };
        _releaser.Start();
    }

    private void Release()
    {
        foreach (var (due, id) in _due.GetConsumingEnumerable())
        {
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
            if (wait > TimeSpan.Zero)
            {
                Thread.Sleep(wait);
            }

            try
            {
                _queue.Accept(id);
            }
            catch (Exception e) when (e is NfqueueException or ObjectDisposedException)
            {
                return;
            }
        }
    }

    public int Delayed => Volatile.Read(ref _delayed);

    public static async Task<SynAckDelay> StartAsync(NetNamespace ns, TimeSpan delay)
    {
        var queue = await ns.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions { QueueNumber = Queue }));
        try
        {
            await ns.CheckAsync("iptables", ["-A", .. Rule], ProxyLab.Timeout);
        }
        catch
        {
            queue.Dispose();
            throw;
        }

        return new SynAckDelay(ns, queue, delay);
    }

    public async ValueTask DisposeAsync()
    {
        await _ns.RunAsync("iptables", ["-D", .. Rule], ProxyLab.Timeout);
        await _stop.CancelAsync();
        await _loop.WaitAsync(ProxyLab.Timeout);
        _due.CompleteAdding();
        _releaser.Join(ProxyLab.Timeout);
        _queue.Dispose();
        _due.Dispose();
        _stop.Dispose();
    }
}
