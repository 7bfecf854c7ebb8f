using System.Collections.Frozen;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace ProxySelection.Engine.Fronts;

/// <summary>
/// The addresses of this host (every interface of the namespace the daemon runs in), for refusing a client's CONNECT to
/// the proxy host itself. Read again at most once per <see cref="RefreshInterval"/>; the connected leg's local==remote
/// check catches an address taken in between.
/// </summary>
public sealed class LocalAddresses(TimeProvider time, Func<IEnumerable<IPAddress>>? source = null)
{
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(2);

    private readonly Func<IEnumerable<IPAddress>> _source = source ?? FromInterfaces;
    private readonly Lock _lock = new();
    private FrozenSet<IPAddress> _addresses = FrozenSet<IPAddress>.Empty;
    private long _readAt;
    private bool _read;

    public bool Contains(IPAddress address)
    {
        var key = Normalize(address);
        lock (_lock)
        {
            if (!_read || time.GetElapsedTime(_readAt) >= RefreshInterval)
            {
                _addresses = _source().Select(Normalize).ToFrozenSet();
                _readAt = time.GetTimestamp();
                _read = true;
            }

            return _addresses.Contains(key);
        }
    }

    /// <summary>The next <see cref="Contains"/> reads the interfaces again.</summary>
    public void Invalidate()
    {
        lock (_lock)
        {
            _read = false;
        }
    }

    // Without a scope id (an interface's link-local address has one, a client's CONNECT does not) and never v4-mapped.
    private static IPAddress Normalize(IPAddress address) =>
        address.IsIPv4MappedToIPv6 ? address.MapToIPv4()
        : address.AddressFamily == AddressFamily.InterNetworkV6 ? new IPAddress(address.GetAddressBytes())
        : address;

    private static IEnumerable<IPAddress> FromInterfaces()
    {
        try
        {
            return NetworkInterface.GetAllNetworkInterfaces()
                .SelectMany(i => i.GetIPProperties().UnicastAddresses)
                .Select(u => u.Address)
                .ToList();
        }
        catch (NetworkInformationException)
        {
            // Unreadable: the local==remote check after the connect still refuses a self-connection.
            return [];
        }
    }
}
