using System.Net;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;
using ProxySelection.Wire;

namespace ProxySelection.IntegrationTests.Hostile;

/// <summary>
/// An on-path forger in the server namespace: every SYN toward port 80 that reaches it (the proxy's probes) is seen
/// through an NFQUEUE, and before the SYN goes on to the server a forged SYN/ACK for its exact 4-tuple goes back — with
/// the options the caller chooses and an acknowledgment number that is not the SYN's ISN + 1 (a forger that got the
/// ports right but not the ISN). It reaches the prober before the real answer does.
/// </summary>
internal sealed class SynAckForger : IAsyncDisposable
{
    private const ushort Queue = 8;
    private static readonly string[] Rule = ["INPUT", "-p", "tcp", "--dport", "80", "--tcp-flags", "SYN,ACK", "SYN", "-j", "NFQUEUE", "--queue-num", "8"];

    private readonly NetNamespace _ns;
    private readonly NfqueueClient _queue;
    private readonly RawSender _sender;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _forged;

    private SynAckForger(NetNamespace ns, NfqueueClient queue, RawSender sender, Func<bool, byte[]> optionsFor, uint ackOffset, int limit)
    {
        _ns = ns;
        _queue = queue;
        _sender = sender;
        var random = new Random(12);
        var packet = new byte[128];
        _loop = queue.RunAsync((in NfqueuePacket syn) =>
        {
            if (Volatile.Read(ref _forged) < limit && TcpPacket.TryParse(syn.Payload, out var parsed) == WireError.None)
            {
                var ip = parsed.Ip;
                var forged = new HostileSegment
                {
                    Source = new IPAddress(ip.DestinationAddress),
                    Destination = new IPAddress(ip.SourceAddress),
                    SourcePort = parsed.Tcp.DestinationPort,
                    DestinationPort = parsed.Tcp.SourcePort,
                    Flags = TcpFlags.Syn | TcpFlags.Ack,
                    // By default off by one: what a forger that does not know the ISN sends at best.
                    Acknowledgment = parsed.Tcp.SequenceNumber + ackOffset,
                    Options = optionsFor(ip.IsIPv6),
                };
                int length = forged.Write(packet, random);
                if (_sender.Send(packet.AsSpan(0, length)))
                {
                    Interlocked.Increment(ref _forged);
                }
            }

            _queue.Accept(syn.PacketId);
        }, _stop.Token);
    }

    /// <summary>SYN/ACKs forged so far.</summary>
    public int Forged => Volatile.Read(ref _forged);

    /// <summary>
    /// Starts forging in <paramref name="ns"/>; <paramref name="optionsFor"/> gets "IPv6?" and returns the option bytes.
    /// <paramref name="ackOffset"/> 1 is a forger that sees the SYN and wins the race (the right ack); after
    /// <paramref name="limit"/> forgeries every SYN passes unanswered.
    /// </summary>
    public static async Task<SynAckForger> StartAsync(NetNamespace ns, Func<bool, byte[]> optionsFor, uint ackOffset = 2, int limit = int.MaxValue)
    {
        var queue = await ns.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions { QueueNumber = Queue }));
        var sender = await RawSender.OpenAsync(ns);
        try
        {
            await ns.CheckAsync("iptables", ["-A", .. Rule], ProxyLab.Timeout);
            await ns.CheckAsync("ip6tables", ["-A", .. Rule], ProxyLab.Timeout);
        }
        catch
        {
            queue.Dispose();
            sender.Dispose();
            throw;
        }

        return new SynAckForger(ns, queue, sender, optionsFor, ackOffset, limit);
    }

    public async ValueTask DisposeAsync()
    {
        await _ns.RunAsync("iptables", ["-D", .. Rule], ProxyLab.Timeout);
        await _ns.RunAsync("ip6tables", ["-D", .. Rule], ProxyLab.Timeout);
        await _stop.CancelAsync();
        await _loop.WaitAsync(ProxyLab.Timeout);
        _queue.Dispose();
        _sender.Dispose();
        _stop.Dispose();
    }
}
