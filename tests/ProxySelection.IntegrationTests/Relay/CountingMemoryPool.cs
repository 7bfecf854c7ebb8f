using System.Buffers;

namespace ProxySelection.IntegrationTests.Relay;

/// <summary>A memory pool that counts what is rented and not yet returned, and the peak of it.</summary>
internal sealed class CountingMemoryPool : MemoryPool<byte>
{
    private long _outstandingBytes;
    private long _peakBytes;
    private int _outstanding;

    public override int MaxBufferSize => 1024 * 1024;
    public long OutstandingBytes => Interlocked.Read(ref _outstandingBytes);
    public long PeakBytes => Interlocked.Read(ref _peakBytes);
    public int Outstanding => Volatile.Read(ref _outstanding);

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        int size = minBufferSize <= 0 ? 4096 : minBufferSize;
        long now = Interlocked.Add(ref _outstandingBytes, size);
        Interlocked.Increment(ref _outstanding);
        long peak;
        while (now > (peak = Interlocked.Read(ref _peakBytes)) && Interlocked.CompareExchange(ref _peakBytes, now, peak) != peak)
        {
        }
        return new Owner(this, size);
    }

    public void ResetPeak() => Interlocked.Exchange(ref _peakBytes, OutstandingBytes);

    protected override void Dispose(bool disposing)
    {
    }

    private sealed class Owner(CountingMemoryPool pool, int size) : IMemoryOwner<byte>
    {
        private byte[]? _array = new byte[size];

        public Memory<byte> Memory => _array ?? throw new ObjectDisposedException(nameof(Owner));

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _array, null) is not null)
            {
                Interlocked.Add(ref pool._outstandingBytes, -size);
                Interlocked.Decrement(ref pool._outstanding);
            }
        }
    }
}
