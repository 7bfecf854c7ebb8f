using System.IO.Pipelines;

namespace ProxySelection.IntegrationTests.Relay;

/// <summary>
/// The System.IO.Pipelines behaviour the relay's fill and drain loops are built on (RelayConnection.FillAsync): when
/// the pipe gives its writing segment back. No sockets; if a runtime update changes this, these fail first.
/// </summary>
[TestFixture]
public sealed class PipeSegmentTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Test]
    public async Task AdvanceTo_WhileAWriteIsOpen_KeepsTheSegmentUntilTheWriteFlushesBytes()
    {
        var (pool, pipe) = Create();
        await WriteAsync(pipe, 1000);
        var read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        pipe.Writer.GetMemory(64 * 1024);

        pipe.Reader.AdvanceTo(read.Buffer.End);
        Assert.That(pool.Outstanding, Is.EqualTo(1), "consumed inside an open write: kept");

        pipe.Writer.Advance(500);
        await pipe.Writer.FlushAsync().AsTask().WaitAsync(Timeout);
        read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        pipe.Reader.AdvanceTo(read.Buffer.End);
        Assert.That(pool.Outstanding, Is.Zero, "consumed with no write open: returned");
    }

    [Test]
    public async Task AdvanceTo_WriteClosedEmpty_ReaderIsNotWokenAndTheSegmentStaysUntilCancelPendingRead()
    {
        var (pool, pipe) = Create();
        await WriteAsync(pipe, 1000);
        var read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        pipe.Writer.GetMemory(64 * 1024);
        pipe.Reader.AdvanceTo(read.Buffer.End);
        await pipe.Writer.FlushAsync().AsTask().WaitAsync(Timeout);

        var next = pipe.Reader.ReadAsync();
        Assert.That(next.IsCompleted, Is.False, "an empty flush does not wake the reader");
        Assert.That(pool.Outstanding, Is.EqualTo(1));

        pipe.Reader.CancelPendingRead();
        read = await next.AsTask().WaitAsync(Timeout);
        pipe.Reader.AdvanceTo(read.Buffer.End);
        Assert.That(read.IsCanceled, Is.True);
        Assert.That(pool.Outstanding, Is.Zero);
    }

    [Test]
    public async Task AdvanceTo_EndOfAFullSegmentWithAnEmptyOneAfterIt_ReturnsOnlyTheFullOneUntilTheReaderLooksAgain()
    {
        var (pool, pipe) = Create();
        // 100 000 of 131 072 bytes used: a 64 KiB GetMemory takes a second segment and, the read having nothing,
        // the write closes empty (the relay's stale wakeup).
        await WriteAsync(pipe, 100_000);
        pipe.Writer.GetMemory(64 * 1024);
        await pipe.Writer.FlushAsync().AsTask().WaitAsync(Timeout);
        Assert.That(pool.Outstanding, Is.EqualTo(2));
        pipe.Reader.CancelPendingRead();

        var read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.That(read.IsCanceled, Is.True);
        Assert.That(read.Buffer.Length, Is.EqualTo(100_000), "the cancelled read still carries the bytes");
        pipe.Reader.AdvanceTo(read.Buffer.End);
        Assert.That(pool.Outstanding, Is.EqualTo(1), "the empty segment after them stays");

        pipe.Reader.CancelPendingRead();
        read = await pipe.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        pipe.Reader.AdvanceTo(read.Buffer.End);
        Assert.That(read.Buffer.IsEmpty, Is.True);
        Assert.That(pool.Outstanding, Is.Zero);
    }

    private static (CountingMemoryPool Pool, Pipe Pipe) Create()
    {
        var pool = new CountingMemoryPool();
        // The relay's defaults: segments of two 64 KiB reads, pause at 1 MiB.
        var pipe = new Pipe(new PipeOptions(
            pool: pool,
            pauseWriterThreshold: 1024 * 1024,
            resumeWriterThreshold: 512 * 1024,
            minimumSegmentSize: 128 * 1024,
            useSynchronizationContext: false));
        return (pool, pipe);
    }

    private static async Task WriteAsync(Pipe pipe, int count)
    {
        pipe.Writer.GetMemory(64 * 1024);
        pipe.Writer.Advance(count);
        await pipe.Writer.FlushAsync().AsTask().WaitAsync(Timeout);
    }
}
